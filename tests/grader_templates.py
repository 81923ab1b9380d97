"""The docs' code-grader templates (features/evaluations/code: "Exact Match", "Argument Comparison"), verbatim,
shared by the grader sandbox's tests and the eval end-to-end tests: OpenPipe graders must run unchanged."""

EXACT_MATCH = """function grader({
messages,
tools,
toolChoice,
generatedOutput,
datasetOutput,
}: GraderArgs): number {
let score = 0.0;
// begin implementation
if (!exactToolCallsMatch(generatedOutput.tool_calls, datasetOutput.tool_calls)) {
return 0.0;
}
if (generatedOutput.content !== datasetOutput.content) {
return 0.0;
}
// generated output matches dataset output
score = 1.0;
// end implementation
return score;
}
interface GraderArgs {
messages: ChatCompletionMessageParam;
tools: ChatCompletionTool[] | null;
toolChoice: "none" | "auto" | ChatCompletionNamedToolChoice | null;
generatedOutput: ChatCompletionMessage;
datasetOutput: ChatCompletionMessage;
}
interface ChatCompletionMessageToolCallFunction {
name: string;
arguments: string;
}
interface ChatCompletionMessageToolCall {
function: ChatCompletionMessageToolCallFunction;
}
interface ChatCompletionMessage {
content: string | null;
refusal: string | null;
tool_calls: ChatCompletionMessageToolCall[] | null;
}
type ChatCompletionMessageParam = ChatCompletionMessage;
interface ChatCompletionTool {
function: FunctionDefinition;
type: "function";
}
interface FunctionDefinition {
name: string;
description?: string;
parameters?: Record;
}
export interface ChatCompletionNamedToolChoice {
function: Function;
type: "function";
}
interface Function {
name: string;
}
function exactToolCallsMatch(
toolCalls1: ChatCompletionMessageToolCall[] | null,
toolCalls2: ChatCompletionMessageToolCall[] | null,
): boolean {
// If either list is null, they can only match if both are null
if (!toolCalls1 && !toolCalls2) {
return true;
}
if (!toolCalls1 || !toolCalls2) {
return false;
}
// Check if lengths match
if (toolCalls1.length !== toolCalls2.length) {
return false;
}
// Compare each tool call
for (let i = 0; i < toolCalls1.length; i++) {
const call1 = toolCalls1[i];
const call2 = toolCalls2[i];
// Compare all fields that must match exactly
if (
call1?.function.name !== call2?.function.name ||
call1?.function.arguments !== call2?.function.arguments
) {
return false;
}
}
// If we made it through all comparisons, the calls match exactly
return true;
}
"""

ARGUMENT_COMPARISON = """function grader({
messages,
tools,
toolChoice,
generatedOutput,
datasetOutput,
}: GraderArgs): number {
let score = 0.0;
// begin implementation
const generatedToolCallArgsStr = generatedOutput.tool_calls?.[0]?.function.arguments;
const datasetToolCallArgsStr = datasetOutput.tool_calls?.[0]?.function.arguments;
if (!generatedToolCallArgsStr || !datasetToolCallArgsStr) {
return 0.0;
}
type JudgementArgs = {
explanation: string;
score: number;
};
const generatedToolCallArgs = JSON.parse(generatedToolCallArgsStr) as JudgementArgs;
const datasetToolCallArgs = JSON.parse(datasetToolCallArgsStr) as JudgementArgs;
if (generatedToolCallArgs.score !== datasetToolCallArgs.score) {
return 0.0;
}
score = 1.0;
// end implementation
return score;
}
interface GraderArgs {
messages: ChatCompletionMessageParam;
tools: ChatCompletionTool[] | null;
toolChoice: "none" | "auto" | ChatCompletionNamedToolChoice | null;
generatedOutput: ChatCompletionMessage;
datasetOutput: ChatCompletionMessage;
}
interface ChatCompletionMessageToolCallFunction {
name: string;
arguments: string;
}
interface ChatCompletionMessageToolCall {
function: ChatCompletionMessageToolCallFunction;
}
interface ChatCompletionMessage {
content: string | null;
refusal: string | null;
tool_calls: ChatCompletionMessageToolCall[] | null;
}
type ChatCompletionMessageParam = ChatCompletionMessage;
interface ChatCompletionTool {
function: FunctionDefinition;
type: "function";
}
interface FunctionDefinition {
name: string;
description?: string;
parameters?: Record;
}
export interface ChatCompletionNamedToolChoice {
function: Function;
type: "function";
}
interface Function {
name: string;
}
function exactToolCallsMatch(
toolCalls1: ChatCompletionMessageToolCall[] | null,
toolCalls2: ChatCompletionMessageToolCall[] | null,
): boolean {
// If either list is null, they can only match if both are null
if (!toolCalls1 && !toolCalls2) {
return true;
}
if (!toolCalls1 || !toolCalls2) {
return false;
}
// Check if lengths match
if (toolCalls1.length !== toolCalls2.length) {
return false;
}
// Compare each tool call
for (let i = 0; i < toolCalls1.length; i++) {
const call1 = toolCalls1[i];
const call2 = toolCalls2[i];
// Compare all fields that must match exactly
if (
call1?.function.name !== call2?.function.name ||
call1?.function.arguments !== call2?.function.arguments
) {
return false;
}
}
// If we made it through all comparisons, the calls match exactly
return true;
}
"""
