//! A deliberately small HTTP/1.1 client over `std::net`, enough to talk to `wrangler dev`
//! and test servers on loopback without pulling an HTTP stack into the crate. Plain
//! `http://` only: for HTTPS endpoints use Stripe's own CLI.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A parsed `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl HttpUrl {
    /// Fails with `InvalidInput` for anything but an `http://` URL with a host.
    pub fn parse(url: &str) -> io::Result<HttpUrl> {
        let invalid =
            |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// URLs are supported by the offline sender"))?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(index) => (&rest[..index], rest[index..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed ["))?;
            (host.to_owned(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.to_owned(), None),
            }
        };
        let port = match port {
            Some(port) => port.parse().map_err(|_| invalid("bad port"))?,
            None => 80,
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        Ok(HttpUrl { host, port, target })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{host}:{}", self.port)
    }
}

/// A response, read to the end.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The first header called `name` (compared without case) in a parsed header list.
pub fn find_header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

impl HttpResponse {
    /// The first header with this name, compared without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let url = HttpUrl::parse(url)?;
    let address = (url.host.as_str(), url.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host has no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;

    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        url.target,
        url.host_header(),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    read_response(BufReader::new(stream))
}

/// POSTs `body` to `url`.
pub fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    request("POST", url, headers, body, timeout)
}

fn read_response(mut reader: impl BufRead) -> io::Result<HttpResponse> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no HTTP status line"))?;

    let (headers, _) = read_headers(&mut reader)?;
    let chunked = find_header(&headers, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = find_header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok());
    // Servers may keep the connection open despite `Connection: close`, so read exactly
    // the announced length rather than waiting for the end of the stream.
    let body = match (chunked, length) {
        (true, _) => read_chunked(&mut reader)?,
        (false, Some(length)) => {
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body)?;
            body
        }
        (false, None) => {
            let mut body = Vec::new();
            reader.read_to_end(&mut body)?;
            body
        }
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Reads header lines up to the blank line; returns them and their byte count.
pub fn read_headers(reader: &mut impl BufRead) -> io::Result<(Vec<(String, String)>, usize)> {
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line)?;
        total += read;
        if read == 0 || line == "\r\n" || line == "\n" {
            return Ok((headers, total));
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_text = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = HttpUrl::parse("http://127.0.0.1:8787/webhook?x=1").expect("valid");
        assert_eq!(
            (url.host.as_str(), url.port, url.target.as_str()),
            ("127.0.0.1", 8787, "/webhook?x=1")
        );
        let url = HttpUrl::parse("http://[::1]:9/").expect("valid");
        assert_eq!((url.host.as_str(), url.port), ("::1", 9));
        assert_eq!(url.host_header(), "[::1]:9");
        let url = HttpUrl::parse("http://localhost?q").expect("valid");
        assert_eq!((url.port, url.target.as_str()), (80, "/?q"));
        for bad in [
            "https://x/",
            "http://",
            "http://:80/",
            "http://h:port/",
            "ftp://h",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunked_and_plain_responses() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        let response = read_response(&chunked[..]).expect("valid");
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"abcde"[..])
        );
        let plain = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: a/b\r\n\r\n{}";
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
        assert_eq!(read_response(&sized[..]).expect("valid").body, b"ok");
        let response = read_response(&plain[..]).expect("valid");
        assert_eq!(response.status, 503);
        assert_eq!(response.header("Content-Type"), Some("a/b"));
        assert!(read_response(&b"garbage"[..]).is_err());
    }
}
