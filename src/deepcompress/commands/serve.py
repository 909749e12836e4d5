"""``deepcompress serve MODEL.dcz [--host 127.0.0.1] [--port 8000]``: the leaf-diagnosis web app."""

from __future__ import annotations

import argparse

from .predict import add_fc_kernel, open_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a web page and JSON API that classify uploaded photos",
                       description="Start a web app for a .dcz image model: a page to upload (or take) a photo "
                                   "and see the diagnosis, POST /api/predict (multipart field 'file', or a raw "
                                   "image body) and GET /healthz.")
    p.add_argument("model", help=".dcz file of an image model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload (default: 10)")
    add_fc_kernel(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    import uvicorn

    from ..webapp import create_app

    app = create_app(open_model(args.model, args.fc_kernel), args.max_upload_mb)
    print(f"serving {args.model} on http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
