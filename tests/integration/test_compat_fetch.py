"""scripts/compat-observer (`make compat`) reads only a wheel's headers: over a local
HTTP server that honours Range requests, from a wheel-shaped zip whose other members
are large, it extracts torch/include/**, version.py and TorchConfig.cmake, nothing
else, and fetches a small part of the file. (The real run needs the network and is
not part of CI; its table is in the README.)"""
import http.server
import importlib.machinery
import importlib.util
import os
import threading
import zipfile

import pytest

from conftest import ROOT


def load_compat():
    loader = importlib.machinery.SourceFileLoader("compat_observer",
                                                  str(ROOT / "scripts" / "compat-observer"))
    spec = importlib.util.spec_from_loader("compat_observer", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class RangeHandler(http.server.BaseHTTPRequestHandler):
    data = b""
    requests = []

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        start, end = 0, len(self.data) - 1
        if rng:
            a, b = rng.removeprefix("bytes=").split("-")
            start, end = int(a), min(int(b), len(self.data) - 1)
        body = self.data[start:end + 1]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(self.data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def wheel_server(tmp_path):
    wheel = tmp_path / "torch-9.9.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    big = os.urandom(4 << 20)  # incompressible, like the wheel's libraries
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("torch/lib/libtorch_cpu.so", big)
        z.writestr("torch/include/c10/core/Device.h", "// device\n" * 50)
        z.writestr("torch/include/ATen/ops/mm_ops.h", "// mm\n" * 50)
        z.writestr("torch/_C.so", big[:2 << 20])  # beyond the 1 MB gap that is fetched through
        z.writestr("torch/version.py", "__version__ = '9.9.0+cpu'\n")
        z.writestr("torch/share/cmake/Torch/TorchConfig.cmake",
                   'set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")\n')
        z.writestr("torch/share/cmake/Caffe2/Caffe2Config.cmake", "# not needed\n")
    RangeHandler.data = wheel.read_bytes()
    RangeHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{wheel.name}", len(RangeHandler.data)
    server.shutdown()


def test_compat_fetches_only_the_headers(wheel_server, tmp_path):
    url, size = wheel_server
    compat = load_compat()
    cache = tmp_path / "cache"
    torch_dir = compat.headers("9.9.0", url, cache)
    files = sorted(str(p.relative_to(torch_dir)) for p in torch_dir.rglob("*") if p.is_file())
    assert files == ["include/ATen/ops/mm_ops.h", "include/c10/core/Device.h",
                     "share/cmake/Torch/TorchConfig.cmake", "version.py"]
    assert (torch_dir / "include/c10/core/Device.h").read_text() == "// device\n" * 50
    assert all(r and r.startswith("bytes=") for r in RangeHandler.requests)
    fetched = sum(int(b) - int(a) + 1 for a, b in
                  (r.removeprefix("bytes=").split("-") for r in RangeHandler.requests))
    assert fetched < size // 10  # the 6 MB of libraries stay on the server
    # cached: a second call asks the server nothing
    n = len(RangeHandler.requests)
    assert compat.headers("9.9.0", url, cache) == torch_dir
    assert len(RangeHandler.requests) == n
