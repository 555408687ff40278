//! Real parts for the end-to-end tests: the built worker under `wrangler dev` (workerd with
//! local KV) in a temporary directory of its own, and an origin HTTP server on loopback that
//! records what it receives and answers as told.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
pub mod fuzz;
pub mod policy;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use stripe_edge::offline::http::{find_header, read_headers, request, HttpResponse};

const STARTUP_LIMIT: Duration = Duration::from_secs(180);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_WAIT_LIMIT: Duration = Duration::from_secs(30);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

fn temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "stripe-edge-{label}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The built worker, served by `wrangler dev` from a copy of the project's `wrangler.toml`
/// (same routes and bindings) with the build step left out, so every instance serves the
/// one bundle that `scripts/test.sh` built.
pub struct Worker {
    child: Child,
    pub url: String,
    pub dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Worker {
    /// Starts a worker whose secrets and vars are `vars` (written to its `.dev.vars`, which
    /// overrides `[vars]`), and waits until `/health` answers.
    pub fn start(vars: &[(&str, &str)]) -> Worker {
        let original =
            fs::read_to_string(repo_root().join("wrangler.toml")).expect("wrangler.toml");
        Worker::start_with_config(vars, &original)
    }

    /// Starts a worker in queue mode: the queue blocks of `wrangler.toml` switched on (by
    /// `scripts/queue-config.sh`, as `scripts/dev.sh --queue` does), `DELIVERY=queue`, and the
    /// consumer's `max_retries` set to `max_retries` so a test reaches the dead-letter queue.
    pub fn start_queue(vars: &[(&str, &str)], max_retries: u32) -> Worker {
        Worker::start_queue_batched(vars, max_retries, 5)
    }

    /// [`Worker::start_queue`] with the consumer taking up to `max_batch_size` messages at a
    /// time (`wrangler dev` runs one batch at a time; Cloudflare runs several consumers).
    pub fn start_queue_batched(
        vars: &[(&str, &str)],
        max_retries: u32,
        max_batch_size: u32,
    ) -> Worker {
        let output = Command::new("bash")
            .arg(repo_root().join("scripts/queue-config.sh"))
            .output()
            .expect("queue-config.sh runs");
        assert!(output.status.success(), "queue-config.sh failed");
        let config = String::from_utf8(output.stdout).expect("UTF-8 config");
        assert!(
            config.contains("\n[[queues.producers]]"),
            "queue blocks switched on"
        );
        let config = config
            .replace("max_retries = 20", &format!("max_retries = {max_retries}"))
            .replacen(
                "max_batch_size = 5",
                &format!("max_batch_size = {max_batch_size}"),
                1,
            );
        let mut vars = vars.to_vec();
        vars.push(("DELIVERY", "queue"));
        Worker::start_with_config(&vars, &config)
    }

    fn start_with_config(vars: &[(&str, &str)], original: &str) -> Worker {
        let root = repo_root();
        // The entry module named by `main` (js/entry.mjs, copied into build/ by the build).
        let main = original
            .lines()
            .find_map(|line| line.strip_prefix("main = "))
            .map(|value| value.trim().trim_matches('"').to_string())
            .expect("wrangler.toml names its main module");
        let entry = root.join(&main);
        assert!(
            entry.exists(),
            "{} is missing: run scripts/test.sh, which builds the worker first",
            entry.display()
        );
        let dir = temp_dir("worker");
        // Serve a private copy of the bundle: wrangler restarts a worker whose files change,
        // and a rebuild in the checkout must not pull the bundle from under a running test.
        copy_dir(&root.join("build"), &dir.join("build"));
        let entry = dir.join(&main);
        let mut config_text = String::new();
        let mut in_build = false;
        for line in original.lines() {
            if line.starts_with('[') {
                in_build = line.trim() == "[build]";
            }
            if in_build {
                continue;
            }
            if line.starts_with("main = ") {
                config_text.push_str(&format!("main = {:?}\n", entry.display().to_string()));
            } else {
                config_text.push_str(line);
                config_text.push('\n');
            }
        }
        let config = dir.join("wrangler.toml");
        fs::write(&config, config_text).expect("write config");
        let dev_vars: String = vars
            .iter()
            .map(|(k, v)| format!("{k}={}\n", quote(v)))
            .collect();
        fs::write(dir.join(".dev.vars"), dev_vars).expect("write .dev.vars");

        // A port picked free can be taken by another process before wrangler binds it (the
        // tests run in parallel, and wrangler picks its own internal ports too); such a start
        // is retried on fresh ports.
        for attempt in 1.. {
            let port = free_port();
            let log = dir.join("wrangler.log");
            let child = spawn_wrangler(&root, &config, &dir, &log, port);
            let mut worker = Worker {
                child,
                url: format!("http://127.0.0.1:{port}"),
                dir: dir.clone(),
                config: config.clone(),
                log,
            };
            match worker.wait_ready() {
                Ok(()) => return worker,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    worker.stop_processes();
                    // Keep the directory for the next attempt: dropping would delete it.
                    std::mem::forget(worker);
                }
                Err(log) => panic!("wrangler dev did not become ready; its log:\n{log}"),
            }
        }
        unreachable!("the loop above returns or panics")
    }

    /// Waits for the first 200 on `/health`; on failure, wrangler's log.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < STARTUP_LIMIT {
            if let Ok(response) = request(
                "GET",
                &self.url("/health"),
                &[],
                b"",
                Duration::from_secs(5),
            ) {
                if response.status == 200 {
                    return Ok(());
                }
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if self.log_text().contains("Address already in use") {
                break;
            }
            thread::sleep(Duration::from_millis(250));
        }
        Err(self.log_text())
    }

    /// Ends wrangler and the workerd it started (its whole process group).
    fn stop_processes(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn webhook(&self) -> String {
        self.url("/webhook")
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        request("GET", &self.url(path), &[], b"", REQUEST_TIMEOUT).expect("GET")
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        request("POST", &self.url(path), headers, body, REQUEST_TIMEOUT).expect("POST")
    }

    /// An `/admin` request with `Authorization: Bearer <token>`, answered with JSON.
    pub fn admin(&self, method: &str, path: &str, token: &str) -> (u16, Value) {
        let authorization = format!("Bearer {token}");
        let response = request(
            method,
            &self.url(path),
            &[("Authorization", &authorization)],
            b"",
            REQUEST_TIMEOUT,
        )
        .expect("admin request");
        let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        (response.status, body)
    }

    /// Waits (up to `limit`) until `ready` holds, polling; panics with `what` and the log.
    pub fn wait_until(&self, what: &str, limit: Duration, ready: impl Fn() -> bool) {
        let started = Instant::now();
        while !ready() {
            if started.elapsed() > limit {
                panic!(
                    "timed out waiting for {what}; the log:\n{}",
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The worker's own structured log lines (wrangler's lines are left out).
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            // Error lines come decorated (`✘ [ERROR] {...}` with colour codes around).
            .filter_map(|line| Some(&line[line.find('{')?..=line.rfind('}')?]))
            .filter(|json| json.contains("\"level\":"))
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect()
    }

    /// Waits (up to a bound) for a structured log line that satisfies `wanted`: wrangler
    /// prints a request's log lines shortly after the response is sent.
    pub fn wait_for_log_line(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            if let Some(line) = self.log_lines().into_iter().find(|line| wanted(line)) {
                return line;
            }
            if started.elapsed() > LOG_WAIT_LIMIT {
                panic!("no such log line; the log:\n{}", self.log_text());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn kv_command(&self, args: &[&str]) -> String {
        let output = Command::new(repo_root().join("node_modules/.bin/wrangler"))
            .args(["kv", "key"])
            .args(args)
            .args(["--binding", "EVENTS", "--local"])
            .arg("--config")
            .arg(&self.config)
            .arg("--persist-to")
            .arg(self.dir.join("state"))
            .current_dir(&self.dir)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("NO_COLOR", "1")
            .env("FORCE_COLOR", "0")
            .output()
            .expect("wrangler kv runs");
        assert!(
            output.status.success(),
            "wrangler kv {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Every key in the local KV namespace, with its metadata and expiration.
    pub fn kv_list(&self) -> Vec<Value> {
        let text = self.kv_command(&["list"]);
        let start = text.find('[').expect("a JSON list");
        serde_json::from_str(&text[start..]).expect("kv list is JSON")
    }

    /// The value stored under `key`, or `None`.
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        let text = self.kv_command(&["get", key]);
        (text.trim() != "Value not found").then(|| text.into_bytes())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop_processes();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Starts `wrangler dev` for `config` on `port`, its output in `log`, in its own process
/// group so that it and its workerd can be ended together.
fn spawn_wrangler(root: &Path, config: &Path, dir: &Path, log: &Path, port: u16) -> Child {
    let log_file = fs::File::create(log).expect("log file");
    Command::new(root.join("node_modules/.bin/wrangler"))
        .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
        .args(["--inspector-port", &free_port().to_string()])
        .arg("--config")
        .arg(config)
        .arg("--persist-to")
        .arg(dir.join("state"))
        .current_dir(dir)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log handle"))
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .expect("wrangler starts (run scripts/setup.sh)")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create build copy");
    for entry in fs::read_dir(from).expect("read build dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy build file");
        }
    }
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', ""))
}

/// The pseudo-status that makes the origin hang.
pub const HANG: u16 = 0;
/// The pseudo-status that makes the origin slow but successful.
const SLOW: u16 = 1;

/// Sends a POST whose body is chunked, without `Content-Length`, and returns the status
/// the server answers with (or 0 when it closes without answering).
pub fn post_chunked(url: &str, headers: &[(&str, &str)], chunk: &[u8], chunks: usize) -> u16 {
    let url = stripe_edge::offline::http::HttpUrl::parse(url).expect("url");
    let mut stream = TcpStream::connect((url.host.as_str(), url.port)).expect("connect");
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .expect("timeout");
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n",
        url.target, url.host, url.port
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    for _ in 0..chunks {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).is_err() {
            break; // the server answered early and closed
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    let _ = reader.read_line(&mut status_line);
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One request the origin received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("origin received JSON")
    }
}

/// An origin server on loopback. It records every request and answers 200, or the status
/// set for an event id with [`Origin::answer`].
/// Where the origin's 3xx answers point (on the origin itself).
pub const REDIRECT_PATH: &str = "/moved";

pub struct Origin {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    faults: Arc<Faults>,
}

/// How the origin answers one event id: `status` (with `Retry-After` when set), for the
/// next `times` requests or forever, then 200.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    retry_after: Option<u32>,
    times: Option<usize>,
}

/// Injected failures: the first attempt for `percent` % of event ids (chosen by a hash of
/// the id) fails with a 500, a 429 with `Retry-After`, a connection closed without an
/// answer, or a hang past any timeout; and while `down`, the port is closed. `accepted`
/// counts, per id, the requests answered 200.
#[derive(Default)]
pub struct Faults {
    percent: AtomicUsize,
    down: AtomicBool,
    abandoned: AtomicUsize,
    attempts: Mutex<HashMap<String, usize>>,
    accepted: Mutex<HashMap<String, usize>>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let url = format!(
            "http://{}/stripe/events",
            listener.local_addr().expect("address")
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(HashMap::new()));
        let faults = Arc::new(Faults::default());
        let (log, rules, injected) = (received.clone(), answers.clone(), faults.clone());
        let address = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        thread::spawn(move || {
            // The port is closed while the origin is down, so connections are refused, and
            // opened again (same port) when it comes back.
            let mut listening = Some(listener);
            loop {
                let down = injected.down.load(Ordering::Relaxed);
                match &listening {
                    Some(_) if down => listening = None,
                    None if down => thread::sleep(Duration::from_millis(20)),
                    None => {
                        listening = TcpListener::bind(address).ok();
                        match &listening {
                            Some(l) => l.set_nonblocking(true).expect("nonblocking"),
                            None => thread::sleep(Duration::from_millis(20)),
                        }
                    }
                    Some(listener) => match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let (log, rules, injected) =
                                (log.clone(), rules.clone(), injected.clone());
                            thread::spawn(move || serve(stream, &log, &rules, &injected));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    },
                }
            }
        });
        Origin {
            url,
            received,
            answers,
            faults,
        }
    }

    /// Goes down (the port closed: connections are refused) for `length`, then comes back.
    pub fn outage(&self, length: Duration) {
        self.faults.down.store(true, Ordering::Relaxed);
        let faults = self.faults.clone();
        thread::spawn(move || {
            thread::sleep(length);
            faults.down.store(false, Ordering::Relaxed);
        });
    }

    /// From now on, fail the first attempt of `percent` % of event ids (see [`Faults`]).
    pub fn inject_faults(&self, percent: usize) {
        self.faults.percent.store(percent, Ordering::Relaxed);
    }

    /// How many requests the worker gave up on before the origin answered.
    pub fn abandoned(&self) -> usize {
        self.faults.abandoned.load(Ordering::Relaxed)
    }

    /// How many requests for each event id were answered 200.
    pub fn accepted(&self) -> HashMap<String, usize> {
        self.faults.accepted.lock().expect("lock").clone()
    }

    /// From now on, hold requests for `event_id` for a minute before answering, like an
    /// origin that hangs.
    pub fn hang(&self, event_id: &str) {
        self.answer(event_id, HANG);
    }

    /// From now on, answer requests for `event_id` with 200 after a second and a half, like
    /// a slow but healthy origin.
    pub fn slow(&self, event_id: &str) {
        self.answer(event_id, SLOW);
    }

    /// From now on, answer requests for `event_id` with `status`.
    pub fn answer(&self, event_id: &str, status: u16) {
        self.set_answer(event_id, status, None, None);
    }

    /// Answer the next `times` requests for `event_id` with `status` (and `Retry-After`
    /// when given), then 200.
    pub fn fail_next(&self, event_id: &str, status: u16, retry_after: Option<u32>, times: usize) {
        self.set_answer(event_id, status, retry_after, Some(times));
    }

    fn set_answer(
        &self,
        event_id: &str,
        status: u16,
        retry_after: Option<u32>,
        times: Option<usize>,
    ) {
        self.answers.lock().expect("lock").insert(
            event_id.to_owned(),
            Answer {
                status,
                retry_after,
                times,
            },
        );
    }

    /// How many requests for `event_id` were answered 200.
    pub fn accepted_count(&self, event_id: &str) -> usize {
        self.accepted().get(event_id).copied().unwrap_or(0)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn received_for(&self, event_id: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.header("Stripe-Edge-Event-Id") == Some(event_id))
            .collect()
    }
}

fn serve(
    stream: TcpStream,
    log: &Mutex<Vec<Received>>,
    rules: &Mutex<HashMap<String, Answer>>,
    faults: &Faults,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let Ok((headers, _)) = read_headers(&mut reader) else {
        return;
    };
    let length = find_header(&headers, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let received = Received {
        method,
        path,
        headers,
        body,
    };
    let id = received
        .header("Stripe-Edge-Event-Id")
        .unwrap_or_default()
        .to_owned();
    let (mut status, retry_after) = {
        let mut rules = rules.lock().expect("lock");
        match rules.get_mut(&id) {
            Some(answer) if answer.times != Some(0) => {
                if let Some(times) = &mut answer.times {
                    *times -= 1;
                }
                (answer.status, answer.retry_after)
            }
            _ => (200, None),
        }
    };
    let attempt = {
        let mut attempts = faults.attempts.lock().expect("lock");
        let count = attempts.entry(id.clone()).or_default();
        *count += 1;
        *count
    };
    let hash = id
        .bytes()
        .fold(7usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    let faulty = attempt == 1 && hash % 100 < faults.percent.load(Ordering::Relaxed);
    log.lock().expect("lock").push(received);
    let mut stream = stream;
    if faulty {
        match hash / 100 % 4 {
            0 => status = 500,
            1 => {
                let _ = write!(
                    stream,
                    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                return;
            }
            // A hang past any timeout: the request is never answered nor processed.
            3 => {
                thread::sleep(Duration::from_secs(60));
                return;
            }
            // A reset: the connection closes without an answer.
            _ => return,
        }
    }
    if status == HANG {
        thread::sleep(Duration::from_secs(60));
        return;
    }
    let status = if status == SLOW {
        thread::sleep(Duration::from_millis(1500));
        200
    } else {
        status
    };
    let retry_after = retry_after
        .map(|seconds| format!("Retry-After: {seconds}\r\n"))
        .unwrap_or_default();
    // Like a web framework that cancels a handler whose client went away, the origin
    // commits an event only while the worker still waits for the answer: a request the
    // worker gave up on (its timeout) is counted as abandoned, not accepted.
    if client_gone(&stream) {
        faults.abandoned.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // A redirect points back at this origin, so a worker that followed it would be seen.
    let location = if (300..400).contains(&status) {
        format!("Location: {REDIRECT_PATH}\r\n")
    } else {
        String::new()
    };
    let answered = write!(
        stream,
        "HTTP/1.1 {status} Status\r\n{retry_after}{location}Content-Length: 2\r\nConnection: close\r\n\r\nok"
    );
    if status == 200 && answered.is_ok() {
        *faults.accepted.lock().expect("lock").entry(id).or_default() += 1;
    }
}

/// Whether the client closed its side of the connection (it stopped waiting).
fn client_gone(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let gone = matches!(stream.peek(&mut byte), Ok(0));
    let _ = stream.set_nonblocking(false);
    gone
}

/// Path of the sender binary built alongside the tests.
pub fn sender() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stripe-edge"))
}
