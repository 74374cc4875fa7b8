//! The pieces every end-to-end test uses: a routes folder made of guest
//! components built from source, the real `wedge` process, an HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// The `wedge` binary under test.
pub const WEDGE: &str = env!("CARGO_BIN_EXE_wedge-e2e");

/// How long a server may take to compile its routes and print its address.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long [`wait_until`] polls: ample for a request to reach its guest
/// or a connection to be accepted on a machine busy with other tests.
const WAIT_UNTIL: Duration = Duration::from_secs(10);

/// A guest component built by `build.rs`, by package name.
pub fn guest(name: &str) -> PathBuf {
    let path = Path::new(env!("WEDGE_GUESTS_DIR")).join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "guest {name} was not built: {}",
        path.display()
    );
    path
}

/// A temporary routes folder.
pub struct Routes {
    dir: tempfile::TempDir,
}

impl Routes {
    /// An empty routes folder.
    pub fn new() -> Routes {
        Routes {
            dir: tempfile::tempdir().expect("create a temp dir"),
        }
    }

    /// Places guest `name` at `file` (e.g. `api/users/[id].wasm`).
    pub fn with(self, file: &str, name: &str) -> Routes {
        let bytes = std::fs::read(guest(name)).expect("read guest");
        self.with_bytes(file, &bytes)
    }

    /// Writes `bytes` at `file`.
    pub fn with_bytes(self, file: &str, bytes: &[u8]) -> Routes {
        let path = self.dir.path().join(file);
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write route file");
        self
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Text a child process wrote, collected as it arrives.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    /// Everything so far.
    pub fn text(&self) -> String {
        self.0.lock().expect("output lock").clone()
    }

    /// Waits up to 10 s for `needle` to appear; returns the text then.
    pub async fn wait_for(&self, needle: &str) -> String {
        self.wait_for_count(needle, 1).await
    }

    /// Waits up to 10 s for `needle` to appear `count` times; returns the
    /// text then.
    pub async fn wait_for_count(&self, needle: &str, count: usize) -> String {
        for _ in 0..200 {
            let text = self.text();
            if text.matches(needle).count() >= count {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "`{needle}` never appeared {count} time(s) in:\n{}",
            self.text()
        );
    }

    fn collect(&self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let output = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = output.0.lock().expect("output lock");
                text.push_str(&line);
                text.push('\n');
            }
        });
    }
}

/// A running `wedge serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// Its compile cache, private to this server unless one was passed.
    _cache: Option<tempfile::TempDir>,
    /// Its data folder, private to this server unless one was passed.
    _data: Option<tempfile::TempDir>,
    /// The address it printed.
    pub addr: SocketAddr,
    /// The admin address it printed, if started with `--admin`.
    pub admin: Option<SocketAddr>,
    /// Its stdout after the `listening on` line: the route table.
    pub stdout: Output,
    /// Its stderr: the log.
    pub log: Output,
    /// Its stderr while nobody reads it (see [`Server::start_with_log_unread`]).
    unread_log: Option<tokio::process::ChildStderr>,
}

impl Server {
    /// Starts `wedge serve ROUTES --listen 127.0.0.1:0` with a fresh compile
    /// cache and waits for its address.
    pub async fn start(routes: &Path) -> Server {
        let cache = tempfile::tempdir().expect("create a cache dir");
        let mut server =
            Server::start_with(routes, &["--cache-dir".as_ref(), cache.path().as_os_str()]).await;
        server._cache = Some(cache);
        server
    }

    /// Starts `wedge serve ROUTES --listen 127.0.0.1:0 ARGS` and waits for its address.
    pub async fn start_with(routes: &Path, args: &[&std::ffi::OsStr]) -> Server {
        Server::start_with_env(routes, args, &[]).await
    }

    /// Like [`Server::start_with`], with `env` added to the server's environment.
    pub async fn start_with_env(
        routes: &Path,
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
    ) -> Server {
        let env: Vec<(&str, Option<&str>)> = env.iter().map(|&(k, v)| (k, Some(v))).collect();
        Server::spawn("serve", routes, args, &env, true).await
    }

    /// Like [`Server::start_with`], but the server's stderr (its log) is a
    /// pipe nobody reads until [`Server::read_log`]: a stalled log sink.
    pub async fn start_with_log_unread(routes: &Path, args: &[&std::ffi::OsStr]) -> Server {
        Server::spawn("serve", routes, args, &[], false).await
    }

    /// Starts reading the log of a server started with
    /// [`Server::start_with_log_unread`] into [`Server::log`].
    pub fn read_log(&mut self) {
        let stderr = self.unread_log.take().expect("the log is not read yet");
        self.log.collect(stderr);
    }

    /// `wedge dev ROUTES --listen 127.0.0.1:0 ARGS`, with each `(name,
    /// Some(value))` of `env` set and each `(name, None)` removed.
    pub async fn start_dev(
        routes: &Path,
        args: &[&std::ffi::OsStr],
        env: &[(&str, Option<&str>)],
    ) -> Server {
        Server::spawn("dev", routes, args, env, true).await
    }

    /// `wedge SUBCOMMAND ROUTES --listen 127.0.0.1:0 ARGS` with a private
    /// cache and data folder (unless `args` names them), waiting for its
    /// address.
    async fn spawn(
        subcommand: &str,
        routes: &Path,
        args: &[&std::ffi::OsStr],
        env: &[(&str, Option<&str>)],
        read_log: bool,
    ) -> Server {
        let mut args: Vec<std::ffi::OsString> = args.iter().map(|a| a.to_os_string()).collect();
        let cache = if args.iter().any(|a| a == "--cache-dir") {
            None
        } else {
            let cache = tempfile::tempdir().expect("create a cache dir");
            args.push("--cache-dir".into());
            args.push(cache.path().into());
            Some(cache)
        };
        let data = if args.iter().any(|a| a == "--data-dir") {
            None
        } else {
            let data = tempfile::tempdir().expect("create a data dir");
            args.push("--data-dir".into());
            args.push(data.path().join("data").into());
            Some(data)
        };
        let mut command = Command::new(WEDGE);
        command
            .arg(subcommand)
            .arg(routes)
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            // Debug lines show every compile or cache load, and every rescan.
            .env("RUST_LOG", "info,wedge::loader=debug,wedge::reload=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command.spawn().expect("start wedge");
        let log = Output::default();
        let stderr = child.stderr.take().expect("piped stderr");
        let unread_log = if read_log {
            log.collect(stderr);
            None
        } else {
            Some(stderr)
        };
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, stdout.read_line(&mut first)).await;
        let first = first.trim();
        let addr = first
            .strip_prefix("listening on http://")
            .or_else(|| first.strip_prefix("listening on https://"))
            .and_then(|addr| addr.parse().ok());
        let Some(addr) = addr else {
            let _ = child.start_kill();
            tokio::time::sleep(Duration::from_millis(200)).await;
            panic!(
                "wedge did not print its address ({read:?}): {first:?}\nlog:\n{}",
                log.text()
            );
        };
        let admin = if args.iter().any(|a| a == "--admin") {
            let mut line = String::new();
            let read = tokio::time::timeout(START_TIMEOUT, stdout.read_line(&mut line)).await;
            let admin = line.trim().strip_prefix("admin on http://");
            let admin = admin.and_then(|addr| addr.parse().ok());
            assert!(admin.is_some(), "no admin address ({read:?}): {line:?}");
            admin
        } else {
            None
        };
        let rest = Output::default();
        rest.collect(stdout);
        Server {
            child,
            _cache: cache,
            _data: data,
            addr,
            admin,
            stdout: rest,
            log,
            unread_log,
        }
    }

    /// An HTTP/1.1 client for the admin listener (started with `--admin`).
    pub fn admin(&self) -> Http {
        Http::new(
            self.admin.expect("the server was started with --admin"),
            false,
        )
    }

    /// Sends the server SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("server is running");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success(), "kill -TERM {pid}");
    }

    /// Waits up to 30 s for the server to exit; its exit code.
    pub async fn wait(mut self) -> i32 {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server exits after SIGTERM")
            .expect("wait for server");
        status.code().expect("exited, not killed by a signal")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("server is running")
    }

    /// Kills the server with SIGKILL, as a crash or the OOM killer would,
    /// and waits until it is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("send SIGKILL");
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server dies of SIGKILL");
    }

    /// Stops the server with SIGTERM and waits for it to exit; its exit code.
    pub async fn stop(self) -> i32 {
        self.terminate();
        self.wait().await
    }

    /// An HTTP/1.1 client for this server.
    pub fn http1(&self) -> Http {
        Http::new(self.addr, false)
    }

    /// An HTTP/2 (prior knowledge, h2c) client for this server.
    pub fn http2(&self) -> Http {
        Http::new(self.addr, true)
    }

    /// Both clients, for tests that must hold over either protocol.
    pub fn clients(&self) -> [Http; 2] {
        [self.http1(), self.http2()]
    }

    /// Waits up to 10 s until exactly `count` guest instances run: requests
    /// sent from other tasks have reached their guests (and so hold their
    /// instance slots). The server was started with `--admin`.
    pub async fn wait_for_in_flight(&self, count: u32) {
        let admin = self.admin();
        let what = format!("{count} guest instance(s) in flight");
        wait_until(&what, async || {
            instances_in_flight(&admin).await == f64::from(count)
        })
        .await;
    }

    /// The server's peak resident memory so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("server is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// The CPU time the server has used, user and system, from
    /// `/proc/PID/stat` (in clock ticks of 10 ms, Linux's fixed `USER_HZ`).
    pub fn cpu_time(&self) -> Duration {
        let pid = self.child.id().expect("server is running");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
        // Fields after the command name, which is in parentheses: utime and
        // stime are the 12th and 13th of them.
        let after_name = &stat[stat.rfind(')').expect("(comm) in stat") + 2..];
        let ticks: u64 = after_name
            .split(' ')
            .skip(11)
            .take(2)
            .map(|ticks| ticks.parse::<u64>().expect("utime and stime are numbers"))
            .sum();
        Duration::from_millis(ticks * 10)
    }
}

/// A request body the client can stream.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A response whose body has been read whole.
pub type Answer = Response<Bytes>;

/// An HTTP client bound to one server and protocol.
pub struct Http {
    client: Client<HttpConnector, Body>,
    base: String,
    /// `"HTTP/1.1"` or `"HTTP/2"`, for assertion messages.
    pub version: &'static str,
}

impl Http {
    fn new(addr: SocketAddr, http2: bool) -> Http {
        let client = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build_http();
        Http {
            client,
            base: format!("http://{addr}"),
            version: if http2 { "HTTP/2" } else { "HTTP/1.1" },
        }
    }

    /// A request builder for `path` on this server.
    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
    }

    /// Sends `request`, reads the whole response.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.send_streaming(request).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("read response body").to_bytes();
        Response::from_parts(parts, body)
    }

    /// Sends `request`, returns the response with its body unread.
    pub async fn send_streaming(&self, request: Request<Body>) -> Response<hyper::body::Incoming> {
        let what = format!(
            "{} {} over {}",
            request.method(),
            request.uri(),
            self.version
        );
        tokio::time::timeout(Duration::from_secs(60), self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("{what}: no response in 60 s"))
            .unwrap_or_else(|e| panic!("{what}: {e:?}"))
    }

    /// Sends `request`; the error if it got no complete response.
    pub async fn try_send(&self, request: Request<Body>) -> Result<Answer, String> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }

    /// `METHOD path` with no body.
    pub async fn call(&self, method: &str, path: &str) -> Answer {
        self.send(self.request(method, path).body(empty()).expect("request"))
            .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path).await
    }

    /// `POST path` with `body`.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Answer {
        self.send(
            self.request("POST", path)
                .body(full(body))
                .expect("request"),
        )
        .await
    }

    /// `METHOD path` with `headers` and `body`.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut request = self.request(method, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(full(body)).expect("request")).await
    }

    /// `GET path`, its body read frame by frame: the text, and the time
    /// from the first data to the last (zero for a body that came at once).
    pub async fn get_streamed(&self, path: &str) -> (Response<String>, Duration) {
        let response = self.send_streaming(self.get_request(path)).await;
        let (parts, mut body) = response.into_parts();
        let (mut text, mut first, mut last) = (String::new(), None, std::time::Instant::now());
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("a body frame").into_data() {
                text.push_str(std::str::from_utf8(&data).expect("a UTF-8 body"));
                first.get_or_insert_with(std::time::Instant::now);
                last = std::time::Instant::now();
            }
        }
        let spread = first.map_or(Duration::ZERO, |first| last - first);
        (Response::from_parts(parts, text), spread)
    }

    /// A `GET path` request with no body, to send as the caller likes.
    pub fn get_request(&self, path: &str) -> Request<Body> {
        self.request("GET", path).body(empty()).expect("request")
    }
}

/// A request body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty request body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Polls `condition` every 20 ms until it holds; panics, saying `what` was
/// awaited, if it does not within 10 s. For a state the server reaches in
/// its own time (a request at its guest, a connection accepted): a fixed
/// sleep is either too short on a busy machine or wastes time on an idle one.
pub async fn wait_until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT_UNTIL;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {WAIT_UNTIL:?} for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `wedge_instances_in_flight` from `admin`'s `/metrics`.
async fn instances_in_flight(admin: &Http) -> f64 {
    let answer = admin.get("/metrics").await;
    assert_eq!(answer.status(), 200, "GET /metrics");
    let metrics = text(&answer);
    sample(metrics, "wedge_instances_in_flight", &[])
        .unwrap_or_else(|| panic!("no wedge_instances_in_flight in:\n{metrics}"))
}

/// The value of the sample `name{labels}` in Prometheus text, whatever the
/// label order; labels not listed may have any value only if `labels` is
/// empty (then the sample must have none).
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let mut found: Vec<(&str, &str)> = series_labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key, value.trim_matches('"')))
                })
                .collect();
            let mut wanted = labels.to_vec();
            found.sort_unstable();
            wanted.sort_unstable();
            (found == wanted).then(|| value.parse().ok())?
        })
}

/// A response body as text.
pub fn text(answer: &Answer) -> &str {
    std::str::from_utf8(answer.body()).expect("UTF-8 body")
}

/// A JSON response body.
pub fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_slice(answer.body())
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", answer.body()))
}

/// Runs `wedge ARGS`, returning (exit code, stdout, stderr).
pub async fn run_wedge(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    run_wedge_with_env(args, &[]).await
}

/// Like [`run_wedge`], with each `(name, Some(value))` set in its
/// environment and each `(name, None)` removed from it.
pub async fn run_wedge_with_env(
    args: &[&std::ffi::OsStr],
    env: &[(&str, Option<&str>)],
) -> (i32, String, String) {
    let mut command = Command::new(WEDGE);
    command.args(args).env("RUST_LOG", "warn");
    // A server gets a data folder of its own, as with `Server`: the
    // default, `.wedge/data` under the current folder, would be shared by
    // every test (and only one server may hold it).
    let serves = args.iter().any(|arg| *arg == "serve" || *arg == "dev");
    let named = args
        .iter()
        .any(|arg| *arg == "--data-dir" || *arg == "--print-config");
    let data = (serves && !named).then(|| tempfile::tempdir().expect("create a data dir"));
    if let Some(data) = &data {
        command.arg("--data-dir").arg(data.path().join("data"));
    }
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let output = tokio::time::timeout(START_TIMEOUT, command.output())
        .await
        .expect("wedge finished in time")
        .expect("run wedge");
    (
        output.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What an [`Upstream`] saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `METHOD path?query`.
    pub target: String,
    /// The request's headers.
    pub headers: http::HeaderMap,
}

/// A loopback HTTP/1.1 server standing in for a third-party API: answers
/// each request with `answer(method, path_and_query)` = (status, body) and
/// records what it saw.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// Starts an upstream; it runs until the test's runtime ends.
    pub async fn start(answer: fn(&str, &str) -> (u16, String)) -> Upstream {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the upstream");
        let addr = listener.local_addr().expect("the upstream's address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
                        record.lock().expect("upstream lock").push(Seen {
                            target: format!("{} {target}", request.method()),
                            headers: request.headers().clone(),
                        });
                        let (status, body) = answer(request.method().as_str(), target);
                        let _ = request.into_body().collect().await;
                        Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Upstream { addr, seen }
    }

    /// `http://127.0.0.1:PORT`, as `allowed_outbound_hosts` takes it.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests it has answered so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("upstream lock").clone()
    }
}

/// A real `redis-server` on a free loopback port, with a private folder,
/// killed when dropped.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts `redis-server`; `None`, after saying what to install, where
    /// it is missing (`cargo xtask test` installs it where it can).
    pub async fn start() -> Option<Redis> {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
        });
        if !found {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: redis-server is not installed; install the Debian package \
                 redis-server (`cargo xtask test` does when it runs as root)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Redis {
            child: None,
            port,
            dir: tempfile::tempdir().expect("a folder for redis"),
        };
        redis.run().await;
        Some(redis)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_until("redis-server answers PING", async || {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let Ok(mut socket) = tokio::net::TcpStream::connect(addr).await else {
                return false;
            };
            let mut answer = [0; 7];
            socket.write_all(b"PING\r\n").await.is_ok()
                && socket.read_exact(&mut answer).await.is_ok()
                && &answer == b"+PONG\r\n"
        })
        .await;
    }

    /// Kills it, as an outage would.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts it again on the same port (with no data: it keeps none).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.run().await;
    }
}

/// The `wasi:http` world a guest is built for: the tests that hold for both
/// run one body on each ([`both_worlds!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// WASI 0.2: `wasi:http/incoming-handler@0.2`.
    P2,
    /// WASI 0.3: `wasi:http/handler@0.3.0`.
    P3,
}

impl World {
    /// As `/routes` names it.
    pub fn name(self) -> &'static str {
        match self {
            World::P2 => "wasi-0.2",
            World::P3 => "wasi-0.3",
        }
    }

    /// The other world.
    pub fn other(self) -> World {
        match self {
            World::P2 => World::P3,
            World::P3 => World::P2,
        }
    }
}

/// One `#[tokio::test]` per [`World`] for each `async fn(World)` named.
macro_rules! both_worlds {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn wasi_0_2() {
                super::$test(crate::harness::World::P2).await
            }

            #[tokio::test]
            async fn wasi_0_3() {
                super::$test(crate::harness::World::P3).await
            }
        }
    )*};
}
pub(crate) use both_worlds;
