"""STAND-IN for `python -m sglang.launch_server` in the demo's eval stage (no GPU here): serves a
model dir's tokenizer with the SGLang stand-in (demo/sglang_standin.py) on a real port until
SIGTERM. A dir the export stand-in wrote (config.json `demo_policy: trained`) plays the demo's
scripted policy (demo/policy.py); any other (the starting model) plays a passive baseline, so
the eval stage has a real difference to report.

    python -m demo.serve --model-path DIR --host 127.0.0.1 --port 15004
"""
from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from cluster.cli import ArgumentParser


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m demo.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    from demo.policy import demo_script, passive_script
    from demo.sglang_standin import SGLangStandIn
    from holdem.chat import load_tokenizer

    try:
        config = json.loads((args.model_path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        print(f"error: demo.serve: {args.model_path}/config.json: {exc}", file=sys.stderr)
        return 2
    trained = config.get("demo_policy") == "trained"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = SGLangStandIn(load_tokenizer(str(args.model_path)), demo_script if trained else passive_script,
                           host=args.host, port=args.port).start()
    print(f"[demo] SGLang stand-in serving {args.model_path} ({'trained: scripted policy' if trained else 'starting model: passive policy'}) "
          f"at {server.url}", flush=True)
    stop.wait()
    server.stop()
    print("[demo] SGLang stand-in stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
