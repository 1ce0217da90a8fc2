"""Here-documents for the placeholder lexer: the delimiter word after ``<<`` (a
placeholder there is refused), and the bodies, skipped at the end of the line that
began them (a placeholder there is "here-document")."""

from __future__ import annotations

from tasks.planning.shell_scan import BLANKS, OPERATOR_CHARS, Scan


def heredoc_delimiter(scan: Scan, strip: bool) -> None:
    """Read the delimiter word after ``<<``; its body starts at the next newline."""
    text = scan.text
    while scan.pos < len(text) and text[scan.pos] in BLANKS:
        scan.pos += 1
    delimiter = []
    while scan.pos < len(text):
        pos = scan.pos
        if pos in scan.placeholder_ends:
            scan.tag(pos, "here-document delimiter")
            delimiter.append(text[pos:scan.placeholder_ends[pos]])
            scan.pos = scan.placeholder_ends[pos]
            continue
        char = text[pos]
        if char in BLANKS or char == "\n" or char in OPERATOR_CHARS:
            break
        delimiter.append(_delimiter_part(scan, char))
    scan.heredocs.append(("".join(delimiter), strip))


def _delimiter_part(scan: Scan, char: str) -> str:
    """The next part of a delimiter word (a quoted string, an escaped or a plain
    character), its quoting removed; ``pos`` moves past it."""
    text, pos = scan.text, scan.pos
    if char in "'\"":
        end = text.find(char, pos + 1)
        end = len(text) if end < 0 else end
        scan.tag_span(pos + 1, end, "here-document delimiter")
        scan.pos = end + 1
        return text[pos + 1:end].replace("\\", "") if char == '"' else text[pos + 1:end]
    if char == "\\":
        scan.pos += 2
        return text[pos + 1:pos + 2]
    scan.pos += 1
    return char


def heredoc_bodies(scan: Scan) -> None:
    """Skip the bodies of the here-documents begun on the line that just ended."""
    text = scan.text
    for delimiter, strip in scan.heredocs:
        while scan.pos < len(text):
            end = text.find("\n", scan.pos)
            end = len(text) if end < 0 else end
            line = text[scan.pos:end]
            if (line.lstrip("\t") if strip else line) == delimiter:
                scan.pos = min(end + 1, len(text))
                break
            scan.tag_span(scan.pos, end, "here-document")
            scan.pos = end + 1
    scan.pos = min(scan.pos, len(text))
    scan.heredocs.clear()
