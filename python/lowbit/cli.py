"""The `lowbit` command line."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from . import __version__, bench, commands, demo
    p = argparse.ArgumentParser(prog="lowbit", description="Fast low-bit matrix multiplication for PyTorch models.")
    p.add_argument("--version", action="version", version=f"lowbit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    b = sub.add_parser("bench", help="time lowbit's kernels against torch matmul",
                       description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(b)
    b.set_defaults(func=bench.bench_command)
    d = sub.add_parser("demo", help="quantize a real model in every scheme and report size, quality and speed",
                       description=demo.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_arguments(d)
    d.set_defaults(func=demo.demo_command)
    q = sub.add_parser("quantize", help="quantize a model and save it (lowbit checkpoint or GPTQ layout)",
                       description="Quantize every decoder linear layer of MODEL (lm_head stays float) and save it.")
    commands.add_quantize_arguments(q)
    q.set_defaults(func=commands.quantize_command)
    e = sub.add_parser("eval", help="perplexity of a model (optionally a quantized checkpoint) on a text",
                       description="Perplexity over consecutive windows of a text, through lowbit's kernels "
                                   "for quantized layers.")
    commands.add_eval_arguments(e)
    e.set_defaults(func=commands.eval_command)
    i = sub.add_parser("info", help="print what this build and machine offer (ISA, CUDA, versions)")
    i.set_defaults(func=_info)
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, RuntimeError) as e:  # AssetError is a RuntimeError
        print(f"lowbit {args.command}: error: {e}", file=sys.stderr)
        return 1


def _info(args) -> int:
    import json
    from . import backend_info
    print(json.dumps(backend_info(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
