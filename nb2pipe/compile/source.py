"""Reading a cell's Python: IPython's input transforms, the parser's limits, and very large cells
in bounded memory.

`parse_cell` transforms and parses a whole cell. CPython's parser needs about 200 bytes of
memory per byte of code (a 14 MB cell of assignments: 2.7 GB and 16 s for `ast.parse`, 1.5 GB
more for IPython's transformer, which tokenizes the whole cell at once), so `cell_statements`
reads a cell bigger than `LARGE_CELL` in chunks of top-level statements, each transformed and
parsed on its own and dropped once its statements are consumed.

Chunks end at a line that starts in column 0 and is not a continuation (`else:`, `except`, a
closing bracket, a line after a decorator or a trailing backslash). Whether such a line really
starts a statement is left to the parser: a prefix of a cell cut inside a string or a bracket
fails with an end-of-input error, and the chunk is then extended. A prefix that parses ends at a
real statement boundary, since tokenizing a prefix gives the same tokens as the whole up to the
cut.

One statement bigger than `LARGE_STATEMENT` (a data literal of a million numbers) cannot be cut
like that. When only the names it uses matter (`names_only`, as for data flow), it is tokenized
as a stream and parsed as a skeleton in which every run of constant elements of a bracket
(`1, 2.5, "a", (3, 4), -1, ...`, with no name and no f-string in them) is one `0`, and line
breaks are kept so line numbers stay true. Otherwise it is parsed whole.
"""

from __future__ import annotations

import ast
import re
import tokenize
import warnings
from collections.abc import Iterator

from nb2pipe.errors import Nb2pipeError

LARGE_CELL = 512 * 1024  # bytes: smaller cells are parsed whole
CHUNK = 128 * 1024  # first try at a chunk's size; doubled while the cut falls inside a statement
LARGE_STATEMENT = 1024 * 1024  # a chunk that cannot close below this is one big statement

TOO_DEEP = ("the cell nests too deeply or is too long for Python's parser (split the expression, "
            "e.g. into several statements)")

# Lines in column 0 that continue the statement above them.
_CONTINUATIONS = frozenset({"else", "elif", "except", "finally"})
_WORD = re.compile(r"[A-Za-z_]\w*")
# SyntaxError messages a prefix cut inside a statement gives (CPython 3.10-3.13).
_CUT_MESSAGES = ("was never closed", "unterminated triple-quoted", "unexpected EOF", "EOF while")


class CellSyntaxError(Nb2pipeError):
    """A cell is not valid Python (after IPython's transforms); `line` is 1-based, within the cell.

    The compiler reports it as a diagnostic of the cell (exit 2)."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


def parse_cell(source: str) -> ast.Module:
    """IPython-transform then parse one cell; CellSyntaxError carries the line number."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        python = TransformerManager().transform_cell(source)
    except Exception as exc:  # the transformer chokes on some malformed magics
        raise CellSyntaxError(f"cannot read IPython syntax: {exc}", None) from None
    return parse_python(python)


def parse_python(python: str) -> ast.Module:
    """Parse plain Python; every way the parser can fail is a CellSyntaxError."""
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence" in the user's code
            warnings.simplefilter("ignore")
            return ast.parse(python)
    except SyntaxError as exc:
        raise CellSyntaxError(exc.msg or "invalid syntax", exc.lineno) from None
    except (RecursionError, MemoryError):  # a 5,000-term sum, 20,000 chained attributes...
        raise CellSyntaxError(TOO_DEEP, None) from None
    except UnicodeEncodeError as exc:  # a lone surrogate: text no Python file can hold
        line = python.count("\n", 0, exc.start) + 1
        raise CellSyntaxError(f"invalid Unicode: a lone surrogate character ({python[exc.start]!r}) cannot be "
                              "Python source", line) from None
    except ValueError as exc:  # "source code string cannot contain null bytes"
        raise CellSyntaxError(str(exc), None) from None


def cell_statements(source: str, names_only: bool = False) -> Iterator[ast.stmt]:
    """The cell's top-level statements in order, with line numbers within the cell. A big cell is
    read chunk by chunk (see the module docstring), so consume them as they come; with
    `names_only`, a huge statement's constants may be replaced by `0`. Raises CellSyntaxError."""
    if len(source) <= LARGE_CELL or source.lstrip().startswith("%%"):
        yield from parse_cell(source).body  # a %%magic's body is one string constant, whatever its size
        return
    lines = source.splitlines(keepends=True)
    start = 0
    while start < len(lines):
        tree, start = _next_chunk(lines, start, names_only)
        yield from tree.body


def _next_chunk(lines: list[str], start: int, names_only: bool) -> tuple[ast.Module, int]:
    """The statements from lines[start] on, as a module with line numbers within the cell, and
    the line after them."""
    size = CHUNK
    while True:
        end, taken = _boundary_after(lines, start, size)
        if taken > LARGE_STATEMENT:
            break
        try:
            return _parse_lines(lines[start:end], start), end
        except CellSyntaxError as exc:
            # A cut inside a statement fails at the end of the input, or on a bracket or a
            # string left open earlier; an error before that is the code's own.
            cut = exc.line is None or exc.line >= _last_code_line(lines, start, end) or \
                any(m in str(exc) for m in _CUT_MESSAGES)
            if end >= len(lines) or not cut:
                raise
        size *= 2
    if not names_only:
        return _parse_lines(lines[start:], start), len(lines)
    skeleton, end = _skeleton(lines, start)
    return _parse_lines([skeleton], start), end


def _parse_lines(lines: list[str], before: int) -> ast.Module:
    """Parse lines that come after `before` lines of their cell, numbering lines within the cell."""
    text = "".join(lines)
    try:
        # Plain Python first: IPython's transforms leave valid Python as it is, and parsing with
        # the lines before as blank lines numbers lines at C speed (no tree walk).
        return parse_python("\n" * before + text)
    except CellSyntaxError:
        pass
    try:
        tree = parse_cell(text)
    except CellSyntaxError as exc:
        raise CellSyntaxError(str(exc), exc.line + before if exc.line else None) from None
    if before:
        ast.increment_lineno(tree, before)
    return tree


def _last_code_line(lines: list[str], start: int, end: int) -> int:
    """The 1-based number of the last line in lines[start:end] that is neither blank nor a comment."""
    for i in range(end - 1, start - 1, -1):
        text = lines[i].strip()
        if text and not text.startswith("#"):
            return i + 1
    return start + 1


def _boundary_after(lines: list[str], start: int, size: int) -> tuple[int, int]:
    """The first line after `start` that may start a statement once `size` characters are taken
    (len(lines) when none does), and the characters taken up to it."""
    taken = 0
    for i in range(start, len(lines)):
        if taken >= size and _may_start_statement(lines, i):
            return i, taken
        taken += len(lines[i])
    return len(lines), taken


def _may_start_statement(lines: list[str], i: int) -> bool:
    line = lines[i]
    if not line or line[0] in " \t\r\n#)]}.":
        return False
    word = _WORD.match(line)
    if word and word.group() in _CONTINUATIONS:
        return False
    before = lines[i - 1].rstrip("\r\n")
    return not (before.endswith("\\") or before.startswith("@"))


# --- one huge statement --------------------------------------------------------------------
_CONSTANT_NAMES = frozenset({"True", "False", "None"})
_CONSTANT_OPS = frozenset({"+", "-", "~", ":"})  # signs, and the colon of a dict entry or a slice
_OPEN, _CLOSE = "([{", ")]}"
_SKIP = (tokenize.NL, tokenize.COMMENT)
_LAYOUT = (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE)

Position = tuple[int, int]  # (row, col) as tokenize gives them: rows from 1, columns from 0


class _Group:
    """A bracket being read: its current element, and the run of constant elements before it."""

    __slots__ = ("opener", "at", "element", "tokens", "constant", "all_constant", "run", "run_end")

    def __init__(self, opener: str, at: Position, element: Position):
        self.opener, self.at = opener, at
        self.element = element  # where the current element starts
        self.tokens = 0  # tokens in the current element
        self.constant = True  # no name (but True/False/None), no f-string, no operator but signs
        self.all_constant = True  # every element so far was constant
        self.run: Position | None = None  # start of the run of constant elements before this one
        self.run_end: Position = element


def _skeleton(lines: list[str], start: int) -> tuple[str, int]:
    """The statement that starts at lines[start], as skeleton source, and the line after it."""
    stack: list[_Group] = []
    spans: list[tuple[Position, Position]] = []  # constant runs to replace, in order
    indent, ended, decorator, first = 0, False, False, True
    end = len(lines)
    try:
        for tok in tokenize.generate_tokens(iter(lines[start:]).__next__):
            kind = tok.type
            if kind in _SKIP:
                continue
            if ended and indent == 0 and kind not in _LAYOUT and not decorator and not (
                    tok.start[1] == 0 and kind == tokenize.NAME and tok.string in _CONTINUATIONS):
                end = start + tok.start[0] - 1
                break
            if kind == tokenize.INDENT:
                indent += 1
            elif kind == tokenize.DEDENT:
                indent -= 1
            elif kind == tokenize.NEWLINE:
                ended, first = True, True
            elif kind == tokenize.ENDMARKER:
                break
            else:
                if first:  # the first token of a logical line: a decorator needs the line after it
                    decorator, first = tok.string == "@", False
                ended = False
                _read(tok, stack, spans)
    except (tokenize.TokenError, SyntaxError) as exc:  # an unclosed bracket or string
        if stack:
            raise CellSyntaxError(f"'{stack[0].opener}' was never closed", start + stack[0].at[0]) from None
        raise CellSyntaxError(f"{exc.args[0] if exc.args else exc}", start + 1) from None
    return _replace_spans(lines[start:end], spans), end


def _read(tok: tokenize.TokenInfo, stack: list[_Group], spans: list[tuple[Position, Position]]) -> None:
    kind, text = tok.type, tok.string
    if kind == tokenize.OP and text in _OPEN:
        if stack:
            stack[-1].tokens += 1
        stack.append(_Group(text, tok.start, tok.end))
        return
    if not stack:
        return
    group = stack[-1]
    if kind == tokenize.OP and text in _CLOSE:
        _end_element(group, tok.start, spans)
        if group.run is not None:
            _replace(spans, group.run, group.run_end)
        stack.pop()
        if stack and not group.all_constant:
            stack[-1].constant = False
        return
    if kind == tokenize.OP and text == ",":
        _end_element(group, tok.start, spans)
        group.element, group.tokens, group.constant = tok.end, 0, True
        return
    group.tokens += 1
    if kind == tokenize.NAME:
        group.constant = group.constant and text in _CONSTANT_NAMES
    elif kind == tokenize.STRING:
        prefix = text[:text.find(text[-1])].lower()
        group.constant = group.constant and "f" not in prefix  # an f-string reads names
    elif kind == tokenize.OP:
        group.constant = group.constant and text in _CONSTANT_OPS
    elif kind != tokenize.NUMBER:
        group.constant = False


def _end_element(group: _Group, at: Position, spans: list[tuple[Position, Position]]) -> None:
    """The current element of `group` ends at `at` (a comma or the closing bracket)."""
    if not group.tokens:
        return  # `()`, a trailing comma: nothing to replace
    if group.constant:
        if group.run is None:
            group.run = group.element
        group.run_end = at
        return
    group.all_constant = False
    if group.run is not None:
        _replace(spans, group.run, group.run_end)
        group.run = None


def _replace(spans: list[tuple[Position, Position]], begin: Position, end: Position) -> None:
    while spans and spans[-1][0] >= begin:  # runs inside this one are covered by it
        spans.pop()
    spans.append((begin, end))


def _replace_spans(lines: list[str], spans: list[tuple[tuple[int, int], tuple[int, int]]]) -> str:
    """`lines` with every span (1-based rows, 0-based columns) replaced by `0` and as many line
    breaks as it held."""
    out: list[str] = []
    row, col = 1, 0
    for (r1, c1), (r2, c2) in spans:
        out.append(_text(lines, (row, col), (r1, c1)))
        out.append(" 0" + "\n" * (r2 - r1))
        row, col = r2, c2
    out.append(_text(lines, (row, col), (len(lines) + 1, 0)))
    return "".join(out)


def _text(lines: list[str], a: tuple[int, int], b: tuple[int, int]) -> str:
    (r1, c1), (r2, c2) = a, b
    if r1 == r2:
        return lines[r1 - 1][c1:c2]
    parts = [lines[r1 - 1][c1:]]
    parts.extend(lines[r1:r2 - 1])
    if r2 - 1 < len(lines):
        parts.append(lines[r2 - 1][:c2])
    return "".join(parts)
