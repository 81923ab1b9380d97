"""What an eval's numbers mean: head-to-head counts and the both-orders tie rule, the judge's verdict
read only from its tool call, win rates, the matrix, pass rates, grades, errors, cost and latency."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from eval.definitions import Invalid, check_spec, pairs
from eval.head_to_head import (
    COMPARISON_TOOL,
    IDENTICAL,
    Reading,
    UnusableVerdict,
    combine,
    judge_messages,
    output_text,
    read_comparison,
    reading_of,
)
from eval.results import JudgementFact, OutputFact, Results, compute, units_per_row

# ---- how much work an eval is --------------------------------------------------------------------------


def test_three_models_compare_three_pairs_per_row_so_n_rows_make_3n_comparisons() -> None:
    models = ["gpt-4o", "openpipe:mine", "dataset"]
    assert pairs(models) == [("gpt-4o", "openpipe:mine"), ("gpt-4o", "dataset"), ("openpipe:mine", "dataset")]
    rows = 7
    assert len(pairs(models)) * rows == 3 * rows
    # each row: two generated outputs (dataset's is the row's own) and three comparisons
    assert units_per_row("head_to_head", models) == 2 + 3
    assert units_per_row("criterion", models) == 2 + 3  # two outputs, three verdicts (dataset's too)
    assert units_per_row("code", ["gpt-4o"]) == 1 + 1
    assert len(pairs(["a", "b", "c", "d"])) == 6  # quadratic in models, as the docs say


# ---- the both-orders rule ------------------------------------------------------------------------------


def r(pick: Any) -> Reading:
    return Reading(pick, f"{pick}. because")


@pytest.mark.parametrize(("ab", "ba", "share", "winner"), [
    ("A", "B", 1.0, "first"),  # both orders pick `first` (shown as A, then as B)
    ("B", "A", 0.0, "second"),  # both orders pick `second`
    ("A", "A", 0.5, None),  # a judge that always prefers what it sees first: a tie, never a win
    ("B", "B", 0.5, None),  # always the second position: a tie too
    ("tie", "B", 0.5, None),  # either says tie
    ("A", "tie", 0.5, None),
    ("tie", "tie", 0.5, None),
    (None, "B", 0.5, None),  # one order gave no usable verdict
    ("A", None, 0.5, None),
])
def test_a_win_needs_both_orders_to_agree_anything_else_is_a_tie(ab: Any, ba: Any, share: float,
                                                                  winner: str | None) -> None:
    judged = combine("first", "second", r(ab), r(ba))
    assert judged.score == share and judged.winner == winner and judged.error is None
    assert judged.reasoning.startswith("A/B order (A = first): ")
    assert "\nB/A order (A = second): " in judged.reasoning


def comparison(args: Any, name: str = "record_comparison", content: str | None = None) -> dict[str, Any]:
    raw = args if isinstance(args, str) else orjson.dumps(args).decode()
    message: dict[str, Any] = {"role": "assistant", "content": content,
                               "tool_calls": [{"id": "c1", "type": "function",
                                               "function": {"name": name, "arguments": raw}}]}
    return {"choices": [{"index": 0, "message": message}]}


def test_the_verdict_is_read_from_the_tool_call_arguments_only() -> None:
    assert read_comparison(comparison({"explanation": "B is right", "winner": "B"})) == ("B", "B is right")
    assert read_comparison(comparison({"explanation": "same", "winner": "tie"})) == ("tie", "same")
    free_text = {"choices": [{"message": {"role": "assistant", "content": '{"winner": "A"} A wins'}}]}
    for bad, why in [
        (free_text, "without calling record_comparison"),
        (comparison({"explanation": "x", "winner": "A"}, name="other_tool"), "without calling"),
        (comparison("{not json"), "not JSON"),
        (comparison(["A"]), "not a JSON object"),
        (comparison({"explanation": "x", "winner": "a"}), "not A, B or tie"),
        (comparison({"explanation": "x"}), "not A, B or tie"),
        (comparison({"winner": "A"}), "no string explanation"),
        ({"choices": []}, "no message"),
    ]:
        with pytest.raises(UnusableVerdict, match=why):
            read_comparison(bad)
        assert reading_of(bad).pick is None and "no usable verdict" in reading_of(bad).text


def test_the_tool_and_the_prompt_the_judge_gets() -> None:
    fn = COMPARISON_TOOL["function"]
    assert fn["name"] == "record_comparison"
    assert fn["parameters"]["required"] == ["explanation", "winner"]
    assert fn["parameters"]["properties"]["winner"]["enum"] == ["A", "B", "tie"]
    row_input = {"messages": [{"role": "user", "content": "Capital of France?"}], "tools": []}
    system, user = judge_messages('prefer the output that contains "Paris"', row_input, "Paris.", "Lyon.")
    assert system["role"] == "system" and system["content"].endswith('\n\nprefer the output that contains "Paris"')
    assert user == {"role": "user", "content": '<input>[{"role":"user","content":"Capital of France?"}]</input>\n'
                                               "<output_a>Paris.</output_a>\n<output_b>Lyon.</output_b>"}
    bare, _ = judge_messages("  ", row_input, "a", "b")
    assert "\n\n" not in bare["content"]  # no instructions: the fixed instruction alone


def test_an_outputs_text_is_its_content_then_its_tool_calls_without_their_ids() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}
    other_id = {**call, "id": "call_2"}
    assert output_text({"role": "assistant", "content": "Sure."}) == "Sure."
    assert output_text({"role": "assistant", "content": None, "tool_calls": [call]}) == (
        '[{"name":"lookup","arguments":"{\\"q\\":\\"x\\"}"}]')
    assert output_text({"content": "Hi", "tool_calls": [call]}) == output_text({"content": "Hi", "tool_calls": [
        other_id]})
    assert output_text({"content": "Hi", "tool_calls": [call]}).startswith("Hi\n[")
    assert IDENTICAL.startswith("The two outputs are identical")


# ---- standings -------------------------------------------------------------------------------------------


def out(row: str, model: str, ok: bool = True, latency: float | None = 10.0, cost: float = 0.001) -> OutputFact:
    return OutputFact(row, model, ok, latency if ok else None, cost if ok else 0.0)


def test_head_to_head_win_rates_and_matrix() -> None:
    models = ["a", "b", "c"]
    outputs = [out(f"r{i}", m, latency=float(10 * (i + 1))) for i in range(2) for m in ("a", "b")]
    judgements = [
        JudgementFact("r0", "a", "b", 1.0), JudgementFact("r1", "a", "b", 0.5),  # a beats b once, one tie
        JudgementFact("r0", "a", "c", 1.0), JudgementFact("r1", "a", "c", 1.0),
        JudgementFact("r0", "b", "c", 0.0), JudgementFact("r1", "b", "c", 0.5),
    ]
    res = compute("head_to_head", models, outputs, judgements)
    by = {x.model: x for x in res.results}
    assert [x.model for x in res.results] == models
    assert by["a"].score == pytest.approx((1 + 0.5 + 1 + 1) / 4) and by["a"].comparisons == 4
    assert by["b"].score == pytest.approx((0 + 0.5 + 0 + 0.5) / 4)
    assert by["c"].score == pytest.approx((0 + 0 + 1 + 0.5) / 4)
    assert sum(x.score or 0 for x in res.results) * 4 == pytest.approx(6)  # every comparison hands out 1 point
    cells = {(c.model, c.opponent): c for c in res.matrix}
    assert len(cells) == 6
    assert cells[("a", "b")].win_rate == pytest.approx(0.75) and cells[("b", "a")].win_rate == pytest.approx(0.25)
    assert cells[("c", "b")].win_rate == pytest.approx(0.75) and cells[("c", "b")].comparisons == 2
    assert res.comparisons == 6
    assert by["a"].latency_ms_p50 == 15.0 and by["a"].cost_usd == pytest.approx(0.002)
    assert by["c"].latency_ms_p50 is None and by["c"].cost_usd == 0.0  # c's outputs were never generated


def test_a_failed_output_counts_against_its_model_only_and_out_of_the_ratios() -> None:
    models = ["good", "broken"]
    outputs = [out("r0", "good"), out("r1", "good"), out("r0", "broken", ok=False), out("r1", "broken")]
    judgements = [JudgementFact("r0", "good", "broken", None),  # no output from broken
                  JudgementFact("r1", "good", "broken", 1.0)]
    by = {x.model: x for x in compute("head_to_head", models, outputs, judgements).results}
    assert (by["good"].errors, by["good"].score, by["good"].comparisons) == (0, 1.0, 1)
    assert (by["broken"].errors, by["broken"].score, by["broken"].comparisons) == (1, 0.0, 1)
    # a comparison the judge failed with both outputs there counts against both
    judge_failed = [JudgementFact("r1", "good", "broken", None)]
    by = {x.model: x for x in compute("head_to_head", models, outputs[:2] + outputs[3:], judge_failed).results}
    assert by["good"].errors == 1 and by["broken"].errors == 1 and by["good"].score is None


def test_criterion_pass_rate_leaves_failed_judgements_out_and_counts_them() -> None:
    models = ["m", "dataset"]
    outputs = [out("r0", "m"), out("r1", "m"), out("r2", "m", ok=False)]
    judgements = [JudgementFact("r0", "m", None, 1.0), JudgementFact("r1", "m", None, None),
                  JudgementFact("r2", "m", None, None),  # its output failed: one error for the row, not two
                  JudgementFact("r0", "dataset", None, 1.0), JudgementFact("r1", "dataset", None, 0.0),
                  JudgementFact("r2", "dataset", None, 1.0)]
    by = {x.model: x for x in compute("criterion", models, outputs, judgements).results}
    assert (by["m"].score, by["m"].scored, by["m"].errors) == (1.0, 1, 2)
    assert by["dataset"].score == pytest.approx(2 / 3) and by["dataset"].errors == 0
    assert by["dataset"].latency_ms_p50 is None and by["dataset"].cost_usd == 0.0


def test_code_scores_are_mean_grades_and_nothing_scored_is_no_score() -> None:
    judgements = [JudgementFact("r0", "m", None, 0.25), JudgementFact("r1", "m", None, 1.0)]
    by = {x.model: x for x in compute("code", ["m", "n"], [], judgements, dataset_failed=["r0"]).results}
    assert by["m"].score == pytest.approx(0.625) and by["m"].scored == 2
    assert by["n"].score is None and by["n"].scored == 0
    dataset = compute("code", ["dataset"], [], [], dataset_failed=["r0"]).results[0]
    assert dataset.errors == 1  # a row without a dataset output fails the `dataset` model


def test_results_survive_their_json_round_trip() -> None:
    res = compute("head_to_head", ["a", "b"], [out("r0", "a"), out("r0", "b")], [JudgementFact("r0", "a", "b", 1.0)])
    again = Results.from_json(orjson.loads(orjson.dumps(res.to_json())))
    assert again == res
    assert res.to_json()["results"][0] == {"model": "a", "score": 1.0, "errors": 0, "costUsd": 0.001,
                                           "latencyMsP50": 10.0, "comparisons": 1, "scored": 1}


# ---- what a request may be -----------------------------------------------------------------------------


def spec(**kw: Any) -> Any:
    args: dict[str, Any] = {"name": "e", "dataset_id": "d", "type_": "head_to_head", "models": ["a", "b"],
                            "judge_model": "", "instructions": "", "criterion": "", "grader": "",
                            "auto_add_models": False, "default_judge_model": "gpt-4o"}
    args.update(kw)
    return check_spec(**args)


def test_a_valid_request_gets_the_default_judge() -> None:
    s = spec()
    assert (s.type, s.models, s.judge_model) == ("head_to_head", ["a", "b"], "gpt-4o")
    assert spec(judge_model="gpt-4o-mini", instructions="be strict").judge_model == "gpt-4o-mini"
    c = spec(type_="criterion", models=["dataset"], criterion="no-paris@v2")
    assert (c.criterion, c.judge_model) == ("no-paris@v2", "")


@pytest.mark.parametrize(("kw", "message"), [
    ({"type_": "pairwise"}, "type must be head_to_head, criterion or code (got 'pairwise')"),
    ({"type_": ""}, "type must be head_to_head, criterion or code (got missing)"),
    ({"name": "  "}, "name is required"),
    ({"dataset_id": ""}, "datasetId is required"),
    ({"models": []}, "models must name at least one model"),
    ({"models": ["a"]}, "a head_to_head eval needs at least 2 models"),
    ({"models": ["a", "b", "a"]}, "model a is listed twice"),
    ({"models": ["a", " "]}, "models must not contain an empty name"),
    ({"models": ["a", "openpipe:"]}, "names no model after 'openpipe:'"),
    ({"type_": "criterion", "models": ["a"]}, "criterion is required for a criterion eval"),
    ({"type_": "code", "models": ["a"]}, "grader is required for a code eval"),
    ({"type_": "code", "models": ["a"], "grader": "x", "criterion": "c"}, "criterion applies to criterion evals"),
    ({"type_": "criterion", "models": ["a"], "criterion": "c", "judge_model": "j"}, "apply to head_to_head evals"),
    ({"criterion": "c"}, "criterion applies to criterion evals only"),
    ({"grader": "function grader() { return 1 }"}, "grader applies to code evals only"),
])
def test_bad_requests_are_refused_naming_the_field(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec(**kw)
