"""An incremental check that a text is the beginning of one JSON object: what constrained decoding needs.

Why: ``response_format={"type": "json_object"}`` and a forced tool call promise JSON, and a small fine-tuned model
does not always keep that promise by itself. The inference engine therefore tries each candidate token against this
check (most likely first) and keeps the first one whose text leaves the answer a valid start of a JSON object; the
answer ends as soon as the object is complete. Only a cut by ``max_tokens`` can then leave it unfinished.

The grammar is RFC 8259's, with the top-level value required to be an object (what both uses need). The state is a
handful of fields, so trying a candidate on a :meth:`JsonPrefix.copy` is cheap. Pure Python, no dependencies: the
gateway-side code and unit tests import it without torch.
"""

from __future__ import annotations

_WS = frozenset(" \t\n\r")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = frozenset('"\\/bfnrt')
_LITERALS = {"t": "rue", "f": "alse", "n": "ull"}

# States. ROOT: before the object; VALUE: a value is due (after ':' or an array's ','); ARRAY_FIRST: after '[';
# OBJECT_FIRST: after '{' (a key or '}'); KEY: after an object's ','; COLON: after a key; AFTER: after a value
# (',' or a closing bracket); STRING / ESCAPE / HEX: inside a string; NUMBER; LITERAL (true, false, null); DONE.
_ROOT, _VALUE, _ARRAY_FIRST, _OBJECT_FIRST, _KEY, _COLON, _AFTER = range(7)
_STRING, _ESCAPE, _HEX_DIGITS, _NUMBER, _LITERAL, _DONE = range(7, 13)

# Number sub-states, after: '-' ; a leading 0 ; integer digits ; '.' ; fraction digits ; 'e' ; exponent sign ;
# exponent digits. A number may end only in _ZERO, _INT, _FRACTION or _EXP_DIGITS.
_MINUS, _ZERO, _INT, _DOT, _FRACTION, _EXP, _EXP_SIGN, _EXP_DIGITS = range(8)
_NUMBER_ENDS = frozenset({_ZERO, _INT, _FRACTION, _EXP_DIGITS})


class JsonPrefix:
    """Feed text with :meth:`feed`; it says whether everything fed so far can still begin one JSON object.

    ``max_leading_ws`` bounds the whitespace allowed before the opening ``{`` (a model must not spend its budget on
    blank lines). After a rejected :meth:`feed` the state is undefined: feed candidates to a :meth:`copy`."""

    __slots__ = ("_key", "_leading", "_literal", "_number", "_pending_hex", "_stack", "_state", "max_leading_ws")

    def __init__(self, max_leading_ws: int = 2) -> None:
        self.max_leading_ws = max_leading_ws
        self._stack: list[str] = []  # "{" or "[" for each open container
        self._state = _ROOT
        self._key = False  # the open string is an object key
        self._number = _INT
        self._literal = ""  # the rest of true/false/null still due
        self._pending_hex = 0
        self._leading = 0

    def copy(self) -> JsonPrefix:
        other = JsonPrefix.__new__(JsonPrefix)
        other.max_leading_ws = self.max_leading_ws
        other._stack = list(self._stack)
        other._state = self._state
        other._key = self._key
        other._number = self._number
        other._literal = self._literal
        other._pending_hex = self._pending_hex
        other._leading = self._leading
        return other

    @property
    def done(self) -> bool:
        """The object is complete: nothing more may follow."""
        return self._state == _DONE

    @property
    def in_string(self) -> bool:
        """Inside a string, where any character but a control character is allowed."""
        return self._state in (_STRING, _ESCAPE, _HEX_DIGITS)

    def feed(self, text: str) -> bool:
        return all(self._char(ch) for ch in text)

    # ---------------------------------------------------------------------------------------------- one character

    def _char(self, ch: str) -> bool:
        state = self._state
        if state == _STRING:
            if ch == '"':
                self._state = _COLON if self._key else _AFTER
            elif ch == "\\":
                self._state = _ESCAPE
            elif ord(ch) < 0x20:
                return False
            return True
        if state == _ESCAPE:
            if ch == "u":
                self._state, self._pending_hex = _HEX_DIGITS, 4
                return True
            self._state = _STRING
            return ch in _ESCAPES
        if state == _HEX_DIGITS:
            if ch not in _HEX:
                return False
            self._pending_hex -= 1
            if not self._pending_hex:
                self._state = _STRING
            return True
        if state == _NUMBER:
            if self._number_char(ch):
                return True
            if self._number not in _NUMBER_ENDS:
                return False
            self._state = _AFTER  # the number ended; the character belongs to what follows it
            return self._char(ch)
        if state == _LITERAL:
            if ch != self._literal[0]:
                return False
            self._literal = self._literal[1:]
            if not self._literal:
                self._state = _AFTER
            return True
        if state == _DONE:
            return False
        if ch in _WS:
            if state == _ROOT:
                self._leading += 1
                return self._leading <= self.max_leading_ws
            return True
        if state == _ROOT:
            if ch != "{":
                return False
            self._open("{")
            return True
        if state in (_OBJECT_FIRST, _KEY):
            if ch == '"':
                self._state, self._key = _STRING, True
                return True
            return ch == "}" and state == _OBJECT_FIRST and self._close("}")
        if state == _COLON:
            if ch != ":":
                return False
            self._state = _VALUE
            return True
        if state == _AFTER:
            if ch == ",":
                self._state = _KEY if self._stack[-1] == "{" else _VALUE
                return True
            return ch in "}]" and self._close(ch)
        # _VALUE or _ARRAY_FIRST
        if ch == "]" and state == _ARRAY_FIRST:
            return self._close("]")
        return self._value_start(ch)

    def _value_start(self, ch: str) -> bool:
        if ch in "{[":
            self._open(ch)
        elif ch == '"':
            self._state, self._key = _STRING, False
        elif ch == "-":
            self._state, self._number = _NUMBER, _MINUS
        elif ch in _DIGITS:
            self._state, self._number = _NUMBER, (_ZERO if ch == "0" else _INT)
        elif ch in _LITERALS:
            self._state, self._literal = _LITERAL, _LITERALS[ch]
        else:
            return False
        return True

    def _number_char(self, ch: str) -> bool:
        """Advance the number by ``ch`` if it continues it; False leaves the number as it was."""
        n = self._number
        if ch in _DIGITS:
            nxt = {_MINUS: _ZERO if ch == "0" else _INT, _INT: _INT, _DOT: _FRACTION, _FRACTION: _FRACTION,
                   _EXP: _EXP_DIGITS, _EXP_SIGN: _EXP_DIGITS, _EXP_DIGITS: _EXP_DIGITS}.get(n)
        elif ch == ".":
            nxt = _DOT if n in (_ZERO, _INT) else None
        elif ch in "eE":
            nxt = _EXP if n in (_ZERO, _INT, _FRACTION) else None
        elif ch in "+-":
            nxt = _EXP_SIGN if n == _EXP else None
        else:
            nxt = None
        if nxt is None:
            return False
        self._number = nxt
        return True

    def _open(self, bracket: str) -> None:
        self._stack.append(bracket)
        self._state = _OBJECT_FIRST if bracket == "{" else _ARRAY_FIRST

    def _close(self, bracket: str) -> bool:
        if not self._stack or self._stack[-1] != {"}": "{", "]": "["}[bracket]:
            return False
        self._stack.pop()
        self._state = _AFTER if self._stack else _DONE
        return True


def is_json_object_prefix(text: str, max_leading_ws: int = 2) -> bool:
    """Whether ``text`` can still be continued into one JSON object."""
    return JsonPrefix(max_leading_ws).feed(text)
