//! Response compression from `berth.toml` to the client: `[edge] compress_min_size` and a
//! route's `compress = false` reach the edge through `berth up`, and curl (`--compressed`, with
//! each algorithm) decodes what the edge sent to the application's bytes. `berth validate`
//! points at a wrong algorithm. The finer rules are tested in `tests/edge/compress.rs`.

use std::time::Duration;

use crate::harness::*;

/// A small application: `/health`, and a page of `n` bytes at any other path.
const PAGE_APP: &str = r#"
import http.server, os

def page(n):
    line = "".join(f"<li data-id='{i}'>Product {i * 7919 % 10007}</li>\n" for i in range(n // 30 + 1))
    return line.encode()[:n]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok\n" if self.path == "/health" else page(int(self.path.rsplit("n=", 1)[-1]) if "n=" in self.path else 20000)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// `curl` through the edge: (response headers, lower-cased; body as curl wrote it).
fn curl(stack: &Stack, path: &str, args: &[&str]) -> (String, Vec<u8>) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", "-D", "-", "-o"])
        .arg(out.path())
        .args(["-H", "Host: shop.test"])
        .args(args)
        .arg(format!("http://127.0.0.1:{}{path}", stack.edge_port))
        .output()
        .expect("curl (apt-get install curl)");
    assert!(output.status.success(), "curl {path}: {output:?}");
    (
        String::from_utf8_lossy(&output.stdout).to_ascii_lowercase(),
        std::fs::read(out.path()).unwrap(),
    )
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
}

#[test]
fn answers_are_compressed_as_berth_toml_says_and_curl_decodes_them() {
    let body = format!(
        "compress_min_size = \"2K\"\n{}\n\
         [[route]]\npath = \"/\"\nservice = \"web\"\n\
         [[route]]\npath = \"/raw\"\nservice = \"web\"\ncompress = false\n",
        service("web", "python3 page.py", 1, "")
    );
    let mut stack = Stack::new("compress", &body);
    stack.write_app("page.py", PAGE_APP);
    stack.up_and_wait();
    stack.wait_healthy("web", 1);
    wait_for("the site to answer", Duration::from_secs(20), || {
        (header(&curl(&stack, "/page?n=10", &[]).0, "content-length") == Some("10")).then_some(())
    });
    let (_, original) = curl(&stack, "/page?n=20000", &[]);
    assert_eq!(original.len(), 20_000);

    for coding in ["gzip", "br", "zstd"] {
        // curl asks for exactly this coding and decodes it.
        let accept = format!("Accept-Encoding: {coding}");
        let (head, decoded) = curl(&stack, "/page?n=20000", &["--compressed", "-H", &accept]);
        assert_eq!(header(&head, "content-encoding"), Some(coding), "{head}");
        assert_eq!(header(&head, "vary"), Some("accept-encoding"), "{head}");
        assert!(decoded == original, "{coding}: the decoded page differs");
        // What went over the wire is smaller.
        let (_, raw) = curl(&stack, "/page?n=20000", &["-H", &accept]);
        assert!(
            raw.len() * 3 < original.len(),
            "{coding}: {} bytes",
            raw.len()
        );
    }
    // curl's own list (deflate, gzip, br, zstd): the edge prefers brotli.
    let (head, decoded) = curl(&stack, "/page?n=20000", &["--compressed"]);
    assert_eq!(header(&head, "content-encoding"), Some("br"), "{head}");
    assert!(decoded == original);

    // Under `compress_min_size`, and on the route with `compress = false`: as they are.
    let (head, small) = curl(&stack, "/page?n=1500", &["--compressed"]);
    assert_eq!(header(&head, "content-encoding"), None, "{head}");
    assert_eq!(small.len(), 1500);
    let (head, raw) = curl(&stack, "/raw/page?n=20000", &["--compressed"]);
    assert_eq!(header(&head, "content-encoding"), None, "{head}");
    assert_eq!(header(&head, "content-length"), Some("20000"), "{head}");
    assert!(raw == original);

    // A wrong algorithm is a diagnostic at its place.
    stack.write_spec(
        "compress",
        &body.replace(
            "compress_min_size = \"2K\"",
            "compress_algorithms = [\"gzip\", \"brotli\"]",
        ),
    );
    let out = stack.berth(&["validate"]);
    let message = out.fails();
    assert!(
        message.contains("berth.toml:7:32") && message.contains("write \"br\""),
        "{message}"
    );
}
