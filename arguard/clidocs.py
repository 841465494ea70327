"""The manual page and the shell completions, generated from the argument parser (so they
list exactly the commands and options `arguard` takes); `packaging/install.sh` writes them
at install time:

    python -m arguard.clidocs man       > /usr/local/share/man/man1/arguard.1
    python -m arguard.clidocs bash|zsh  > …/completions/arguard

argparse-manpage writes the page and shtab the completion scripts (both pure Python, in the
`install` extra: only the installer needs them).
"""

from __future__ import annotations

import sys

from arguard import __version__
from arguard.cli import build_parser

SHELLS = ("bash", "zsh", "tcsh")

FILES = r"""
.TP
.I /etc/arguard/arguard.toml
the configuration (\fB\-c\fR FILE or \fB$ARGUARD_CONFIG\fR choose another); fragments in
.I /etc/arguard/conf.d/*.toml
are read after it
.TP
.I /etc/arguard/decoders.d/*.toml, /etc/arguard/rules.d/*.toml
drop-in decoders and rules
.TP
.I /var/lib/arguard/arguard.db
blocks, offences and the log lines behind them, offenders, read offsets (SQLite)
.TP
.I /var/log/arguard/alerts.json, /var/log/arguard/active-responses.log
alerts in Wazuh's format; every add, extend, delete, skip and failure
.TP
.I /run/arguard/control.sock
the daemon's control socket (root only)
"""

EXIT_STATUS = r"""
0: success; 1: a configuration error (each problem as FILE:LINE: message) or a state
directory in use; 2: bad usage, or an import that could not translate everything; 3: the
daemon is not running (status, reload); 4: the daemon refused the request; 5: ruletest
cases failed.
"""

SEE_ALSO = r"""
The configuration reference, formats and guides in the documentation directory
(\fI/opt/arguard/share/doc/arguard\fR, or \fIdocs/\fR in the source):
configuration.md, formats.md, actions.md, importing.md, architecture.md.
"""


def man_page() -> str:
    from argparse_manpage.manpage import Manpage

    page = Manpage(build_parser())
    page.source = f"arguard {__version__}"
    page.manual = "arguard manual"
    page.description = "fail2ban-style active response with Wazuh-compatible rules"
    for heading, text in (("FILES", FILES), ("EXIT STATUS", EXIT_STATUS),
                          ("SEE ALSO", SEE_ALSO)):
        page.add_section(heading, ">", text.strip())
    return str(page)


def completion(shell: str) -> str:
    import shtab

    return shtab.complete(build_parser(), shell)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["man"], *([shell] for shell in SHELLS)):
        print(f"usage: python -m arguard.clidocs man|{'|'.join(SHELLS)}", file=sys.stderr)
        return 2
    sys.stdout.write(man_page() if args == ["man"] else completion(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
