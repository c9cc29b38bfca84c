//! An HTTP proxy in front of moto that answers some requests with an AWS error instead of
//! forwarding them: throttling and "prior request not complete" never happen on moto, and the
//! retry paths for them need a real HTTP exchange to be tested.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which requests fail, and with what: the first `times` requests whose request line contains
/// `matching` get HTTP `status` with a Route53-style error `code`.
pub struct Fault {
    pub matching: &'static str,
    pub times: usize,
    pub status: u16,
    pub code: &'static str,
}

pub struct FaultProxy {
    pub endpoint: String,
    injected: Arc<AtomicUsize>,
    forwarded: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    pub fn start(upstream: &str, faults: Vec<Fault>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let injected = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Mutex::new(faults));
        let (inj, fwd) = (injected.clone(), forwarded.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (upstream, faults, inj, fwd) =
                    (upstream.clone(), faults.clone(), inj.clone(), fwd.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &upstream, &faults, &inj, &fwd);
                });
            }
        });
        FaultProxy {
            endpoint,
            injected,
            forwarded,
        }
    }

    /// How many requests were answered with an injected error.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }

    /// Request lines that reached moto.
    pub fn forwarded(&self) -> Vec<String> {
        self.forwarded.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// Serves one client connection, request by request (the SDK keeps connections alive).
fn serve(
    conn: TcpStream,
    upstream: &str,
    faults: &Mutex<Vec<Fault>>,
    injected: &AtomicUsize,
    forwarded: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut client = conn;
    loop {
        let mut head = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if let Some(v) = line
                .to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(str::trim)
            {
                length = v.parse().unwrap_or(0);
            }
            let end = line == "\r\n";
            head.push(line);
            if end {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let request_line = head[0].trim_end().to_string();

        let fault = faults.lock().ok().and_then(|mut fs| {
            fs.iter_mut()
                .find(|f| f.times > 0 && request_line.contains(f.matching))
                .map(|f| {
                    f.times -= 1;
                    (f.status, f.code)
                })
        });
        if let Some((status, code)) = fault {
            injected.fetch_add(1, Ordering::SeqCst);
            let xml = format!(
                "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>injected by the test proxy</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
            );
            write!(
                client,
                "HTTP/1.1 {status} Error\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                xml.len()
            )?;
            continue;
        }

        if let Ok(mut f) = forwarded.lock() {
            f.push(request_line);
        }
        // Forward on a fresh connection that moto closes after answering; the answer goes back
        // as it came, so the client closes this connection too and opens a new one.
        let mut up = TcpStream::connect(upstream)?;
        for line in &head {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("connection:") || line == "\r\n" {
                continue;
            }
            up.write_all(line.as_bytes())?;
        }
        up.write_all(b"Connection: close\r\n\r\n")?;
        up.write_all(&body)?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer)?;
        client.write_all(&answer)?;
        // An answer that delimits itself lets the client keep the connection; one that ends
        // at the close needs the close.
        let head = String::from_utf8_lossy(&answer[..answer.len().min(4096)]).to_ascii_lowercase();
        if !head.contains("content-length:") {
            return Ok(());
        }
    }
}
