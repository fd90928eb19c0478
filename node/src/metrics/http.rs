//! The metrics endpoint: a minimal HTTP/1.1 server on its own thread that answers
//! `GET /metrics` with the Prometheus text and closes the connection after each answer.
//!
//! One connection at a time: a scraper asks every few seconds, and serving them in turn
//! bounds the memory and threads a misbehaving client can take to one request of at most
//! [`REQUEST_BYTES_MAX`], held for at most [`IO_TIMEOUT`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::text::CONTENT_TYPE;

/// The most bytes of a request's line and headers read. Why 8 KiB: a scraper's request
/// is a few hundred bytes; anything longer is not a scrape.
pub const REQUEST_BYTES_MAX: usize = 8 << 10;

/// How long reading a request or writing an answer may take. Why 5 s: Prometheus' default
/// scrape timeout is 10 s, and a slow client must not hold the only slot longer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "the metrics port {address} ({key}) is already in use by another process; stop it or \
         choose another port"
    )]
    PortInUse {
        address: SocketAddr,
        key: &'static str,
    },
    #[error("listening on {address} ({key}): {source}")]
    Bind {
        address: SocketAddr,
        key: &'static str,
        source: std::io::Error,
    },
    #[error("starting the metrics thread: {0}")]
    Thread(std::io::Error),
}

/// Renders one scrape's text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds `address` (the port named by `key`) and serves scrapes from a thread until the
/// process ends; returns the bound address (port 0: the kernel's choice).
pub fn start(
    address: SocketAddr,
    key: &'static str,
    render: Render,
) -> Result<SocketAddr, MetricsError> {
    let listener = TcpListener::bind(address).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            MetricsError::PortInUse { address, key }
        } else {
            MetricsError::Bind {
                address,
                key,
                source,
            }
        }
    })?;
    let bound = listener.local_addr().map_err(|source| MetricsError::Bind {
        address,
        key,
        source,
    })?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(listener, render))
        .map_err(MetricsError::Thread)?;
    Ok(bound)
}

fn serve(listener: TcpListener, render: Render) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, &render) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a metrics connection failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Reads one request, answers it, and closes the connection.
fn answer(mut stream: TcpStream, render: &Render) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = match read_head(&mut stream)? {
        Some(head) => head,
        None => {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
    };
    let (status, body) = match route(&head) {
        Route::Metrics => ("200 OK", render()),
        Route::NotFound => ("404 Not Found", "not found: try GET /metrics\n".to_string()),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "only GET\n".to_string()),
        Route::BadRequest => ("400 Bad Request", "bad request\n".to_string()),
    };
    let content_type = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain"
    };
    respond(&mut stream, status, content_type, &body)
}

/// The request line and headers, up to the blank line; `None` past [`REQUEST_BYTES_MAX`].
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Ok(Some(head));
        }
        head.extend_from_slice(&buffer[..read]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > REQUEST_BYTES_MAX {
            return Ok(None);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// What the request line asks for.
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Route::BadRequest;
    }
    if method != "GET" {
        return Route::MethodNotAllowed;
    }
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_requests() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe\r\n\r\n"), Route::BadRequest);
    }

    /// A real socket: the answer, a 404, an oversized request, and a busy port.
    #[test]
    fn serves_over_a_socket() {
        let render: Render = Arc::new(|| "# HELP a b\n# TYPE a gauge\na 1\n".to_string());
        let bound = start("127.0.0.1:0".parse().unwrap(), "test_port", render.clone()).unwrap();
        let ask = |request: &[u8]| {
            let mut stream = TcpStream::connect(bound).unwrap();
            stream.write_all(request).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        };
        let ok = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("version=0.0.4"), "{ok}");
        assert!(
            ok.ends_with("\r\n\r\n# HELP a b\n# TYPE a gauge\na 1\n"),
            "{ok}"
        );
        assert!(ask(b"GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        // One byte past the limit: the server reads all of it, so closing sends no reset.
        let huge = vec![b'a'; REQUEST_BYTES_MAX + 1];
        assert!(ask(&huge).starts_with("HTTP/1.1 431"));
        let taken = start(bound, "test_port", render).unwrap_err();
        assert!(matches!(taken, MetricsError::PortInUse { .. }), "{taken}");
        assert!(taken.to_string().contains("test_port"), "{taken}");
    }
}
