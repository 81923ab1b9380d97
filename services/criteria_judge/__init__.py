"""criteria-judge: criteria and their versions, alignment sets with human labels, and judgements."""
