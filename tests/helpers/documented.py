"""The shell commands a document prints, as a user would copy them."""

from __future__ import annotations

import re
import shlex

from ttsr_lightning.config_paths import REPO_ROOT


def documented_commands(document: str, section: str | None = None) -> list[str]:
    """The shell lines of the ``bash`` code blocks of ``document``, or of those under the heading
    ``section`` (up to the next heading of the same or a higher level), continuation lines joined and
    comments left out."""
    body = (REPO_ROOT / document).read_text()
    if section is not None:
        heading = re.search(rf"^(#+) {re.escape(section)}\n", body, flags=re.MULTILINE)
        if heading is None:
            raise AssertionError(f"{document} has no heading {section!r}")
        level = len(heading.group(1))
        following = re.search(rf"^#{{1,{level}}} ", body[heading.end() :], flags=re.MULTILINE)
        body = body[heading.end() : heading.end() + following.start() if following else len(body)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.DOTALL):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.split(" # ")[0].strip())
    return commands


def training_overrides(command: str) -> list[str]:
    """The overrides of a printed ``python -m ttsr_lightning ...`` command, as the shell passes them."""
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "ttsr_lightning"], command
    return argv[3:]
