"""``rgi-anomalib``: anomalib's CLI with our models registered, plus ``benchmark``, ``report``
and ``inpaint``.

``rgi-anomalib train|test|predict|fit|validate|export ...`` behave exactly like the same
``anomalib`` sub-commands (the plain ``anomalib`` command works too, see _anomalib_hook).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from rgi_anomalib.utils import silence_known_warnings

USAGE = """usage: rgi-anomalib <command> [options]

commands:
  train, fit, validate, test, predict, export
                anomalib's sub-commands, with Rgi, RRgi, AnoGan and Rasl registered
                (e.g. rgi-anomalib train --model rgi --data anomalib.data.Folder ...)
  benchmark     compare methods on synthetic BTAD: --config FILE [--check BASELINE]
                (rgi-anomalib benchmark --help)
  report        mean ± sd over draws, λ by cross-validation and the paper's claims from the
                results.json of several runs: RUN_DIR [RUN_DIR ...] [--out FILE.md]
                (rgi-anomalib report --help)
  inpaint       restore images with a fitted Rgi/RRgi/AnoGan checkpoint (mask-free, or with
                --mask): --ckpt_path X --input IMG|DIR --output DIR (rgi-anomalib inpaint --help)
"""


def _show_our_info_logs() -> None:
    """Print our own INFO lines (the solve's progress when the output is not a terminal, the
    reconstruction gap) on stderr; for ``benchmark`` only when the output is not a terminal (on
    one, its own bar shows the progress). Unlike ``anomalib``, this command does not configure
    logging for every library (anomalib's INFO lines stay quiet)."""
    ours = logging.getLogger("rgi_anomalib")
    if ours.handlers or logging.getLogger().handlers:
        return  # logging is configured already
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(message)s"))
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rgi-anomalib`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    silence_known_warnings()
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] == "benchmark":
        from rgi_anomalib.benchmark.cli import main as benchmark_main

        if not sys.stdout.isatty():  # a log file: the solve's progress lines too
            _show_our_info_logs()

        return benchmark_main(args[1:])
    if args[0] == "report":
        from rgi_anomalib.benchmark.draws.cli import main as report_main

        return report_main(args[1:])
    if args[0] == "inpaint":
        from rgi_anomalib.inpaint import main as inpaint_main

        return inpaint_main(args[1:])

    from anomalib.cli.cli import AnomalibCLI

    import rgi_anomalib.models  # noqa: F401 - registers our models before argument parsing
    from rgi_anomalib.utils import OneLineError

    _show_our_info_logs()

    try:
        AnomalibCLI(args)
    except OneLineError as error:  # a refusal or bad input, not a crash: one line, no traceback
        print(f"rgi-anomalib {args[0]}: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1  # 2: bad input (a dataset's files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
