//! Shared test tasks and app builders.

use std::time::Duration;

use celeriac::{App, AppBuilder, TaskCtx, TaskError};

pub(crate) const T: Duration = Duration::from_secs(10);

pub(crate) fn add(x: i64, y: i64) -> i64 {
    x + y
}

pub(crate) async fn sleep_ms(ms: u64) -> u64 {
    celeriac::rt::sleep(Duration::from_millis(ms)).await;
    ms
}

pub(crate) fn fail(message: String) -> Result<(), TaskError> {
    Err(TaskError::value_error(message))
}

pub(crate) fn boom() -> i64 {
    panic!("kaboom")
}

pub(crate) fn whoami(ctx: TaskCtx, tag: String) -> (String, String, usize, String) {
    (ctx.id().to_owned(), ctx.name().to_owned(), ctx.shard(), tag)
}

/// Blocks its shard on purpose (a CPU-bound body not declared blocking) to create skew.
pub(crate) fn hog(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Tests that start several processes or load the CPU for seconds run one at a time, so the
/// timings of the interop tests stay meaningful on a 2-core machine (the rest run in parallel).
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The failure inside an error that must be one.
pub(crate) fn failure(e: celeriac::Error) -> Box<celeriac::TaskFailure> {
    match e {
        celeriac::Error::TaskFailed(f) => f,
        other => panic!("expected a task failure, got {other:?}"),
    }
}

pub(crate) fn base(name: &str) -> AppBuilder {
    App::builder(name)
        .use_env(false)
        .broker("memory://")
        .result_backend("memory://")
        .task("t.add", ["x", "y"], add)
        .task("t.sleep", ["ms"], sleep_ms)
        .task("t.fail", ["message"], fail)
        .task("t.boom", [], boom)
        .task("t.whoami", ["tag"], whoami)
        .task("t.hog", ["ms"], hog)
}

/// A real redis-server on a free loopback port, in its own directory, stopped by PID on drop.
pub(crate) struct RedisServer {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
    tls: bool,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("celeriac-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = RedisServer { port, dir, child: None, tls: false };
        s.spawn();
        s
    }

    /// A TLS-only server with a fresh self-signed certificate (`ca.pem` in its directory).
    pub(crate) fn start_tls() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("celeriac-redis-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        make_test_certs(&dir);
        let mut s = RedisServer { port, dir, child: None, tls: true };
        s.spawn();
        s
    }

    pub(crate) fn ca_file(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }

    fn spawn(&mut self) {
        let bin = std::env::var("CELERIAC_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut cmd = std::process::Command::new(&bin);
        if self.tls {
            let (cert, key) = (self.dir.join("cert.pem"), self.dir.join("key.pem"));
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(self.dir.join("ca.pem"));
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args([
                "--appendfsync",
                "always",
                "--dir",
                self.dir.to_str().unwrap(),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}): run scripts/test.sh, which installs redis-server"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (SIGTERM: it writes its append-only file) and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            send_signal(c.id(), 15);
            let _ = c.wait();
        }
    }

    /// Stops and starts the server on the same port and data directory.
    pub(crate) fn restart(&mut self, down_for: Duration) {
        self.stop();
        std::thread::sleep(down_for);
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA (`ca.pem`) and a server certificate it signs (`cert.pem`, `key.pem`) for 127.0.0.1 in
/// `dir` (webpki refuses a self-signed end entity).
pub(crate) fn make_test_certs(dir: &std::path::Path) {
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    let openssl = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian package openssl) makes the test certificates");
        assert!(ok.success(), "openssl {args:?} failed");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=celeriac-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends a signal to a PID (the test's own children only).
pub(crate) fn send_signal(pid: u32, sig: i32) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Runs one Redis command from the test thread (on a blocking connection of its own).
pub(crate) fn redis_cmd(url: &str, args: &[&str]) -> celeriac::transport::redis::Reply {
    let url = celeriac::transport::redis::RedisUrl::parse(url).unwrap();
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    celeriac::transport::redis::command(&url, &args).expect("redis command")
}

pub(crate) fn frame_str(f: &celeriac::transport::redis::Reply) -> Option<String> {
    f.as_text()
}

pub(crate) fn frame_list(f: &celeriac::transport::redis::Reply) -> Vec<String> {
    f.texts()
}

pub(crate) fn frame_int(f: &celeriac::transport::redis::Reply) -> i64 {
    f.as_int().unwrap_or_else(|| panic!("expected an integer reply, got {f:?}"))
}

/// An app like [`base`] on a Redis server.
pub(crate) fn on_redis(name: &str, server: &RedisServer) -> AppBuilder {
    base(name).broker(&server.url()).result_backend(&server.url())
}

/// Sends one command on a fresh plain socket and returns the first line of the reply (`+OK`,
/// `-LOADING …`, `:1`): for server states the celeriac client would retry through.
pub(crate) fn raw_redis(port: u16, args: &[&str]) -> String {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// A real rabbitmq-server (the Debian package) on free loopback ports, with its own node name,
/// data, logs, empty plugin list and epmd; stopped by the PID in its pid file, and its epmd with
/// `epmd -kill`. It starts in about 5 s, so a test binary shares one ([`rabbit`]).
pub(crate) struct RabbitServer {
    pub port: u16,
    /// The TLS listener's port, for a node started with [`RabbitServer::start_tls`].
    pub tls_port: Option<u16>,
    epmd_port: u16,
    dist_port: u16,
    dir: std::path::PathBuf,
    /// The package's start script (it runs the node as user rabbitmq), reaped at stop.
    script: std::sync::Mutex<Option<std::process::Child>>,
}

impl RabbitServer {
    pub(crate) fn start() -> RabbitServer {
        Self::start_with(false)
    }

    /// A node with a TLS listener too, its certificate signed by `ca.pem` in its directory.
    pub(crate) fn start_tls() -> RabbitServer {
        Self::start_with(true)
    }

    /// The CA that signed a TLS node's certificate.
    pub(crate) fn ca_file(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }

    fn start_with(tls: bool) -> RabbitServer {
        let port = free_port();
        let (epmd_port, dist_port) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("celeriac-rabbit-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let tls_port = tls.then(|| {
            make_test_certs(&dir);
            let p = free_port();
            let d = dir.display();
            std::fs::write(
                dir.join("rabbitmq.conf"),
                format!(
                    "listeners.ssl.default = {p}\nssl_options.cacertfile = {d}/ca.pem\nssl_options.certfile = {d}/cert.pem\n\
                     ssl_options.keyfile = {d}/key.pem\nssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n"
                ),
            )
            .unwrap();
            p
        });
        // As root the package's script runs the node as user rabbitmq: it must own the dirs.
        let _ = std::process::Command::new("chown").args(["-R", "rabbitmq"]).arg(&dir).status();
        let s = RabbitServer { port, tls_port, epmd_port, dist_port, dir, script: std::sync::Mutex::new(None) };
        s.spawn();
        s
    }

    fn spawn(&self) {
        let bin = std::env::var("CELERIAC_RABBITMQ_SERVER").unwrap_or_else(|_| "/usr/sbin/rabbitmq-server".into());
        let out = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.out")).unwrap();
        let mut cmd = std::process::Command::new("setsid");
        if self.tls_port.is_some() {
            cmd.env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"));
        }
        let _ = std::process::Command::new("chown").arg("rabbitmq").arg(self.dir.join("server.out")).status();
        let child = cmd
            .arg(&bin)
            .current_dir(&self.dir)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODENAME", format!("celeriac{}@localhost", self.port))
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}): run scripts/test.sh, which installs rabbitmq-server")
            });
        *self.script.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // The port opens once the broker booted; AMQP logins work from then on.
        let last = self.tls_port.unwrap_or(self.port);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", last)).is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "rabbitmq-server did not start on port {}: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the node (SIGTERM by its pid file, as its init script would) and starts it again on
    /// the same ports and data: durable queues and persistent messages survive.
    pub(crate) fn restart(&self, down_for: Duration) {
        self.stop_node();
        std::thread::sleep(down_for);
        self.spawn();
    }

    fn stop_node(&self) {
        if let Some(pid) = std::fs::read_to_string(self.dir.join("pid")).ok().and_then(|p| p.trim().parse::<u32>().ok())
        {
            send_signal(pid, 15);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::path::Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            send_signal(pid, 9);
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
        if let Some(mut script) = self.script.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = script.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}//", self.port)
    }

    /// Messages in `queue`, ready or unacked, from `rabbitmqctl`'s own view (not celeriac's).
    pub(crate) fn ready(&self, queue: &str) -> usize {
        let (ready, unacked) = self.counts(queue);
        ready + unacked
    }

    /// Messages ready and messages delivered but unacked in `queue`.
    pub(crate) fn counts(&self, queue: &str) -> (usize, usize) {
        let out =
            self.ctl(&["list_queues", "-q", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged"]);
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[0] == queue).then(|| (f[1].parse().unwrap_or(0), f[2].parse().unwrap_or(0)))
            })
            .next()
            .unwrap_or((0, 0))
    }

    /// Runs `rabbitmqctl` against this node.
    pub(crate) fn ctl(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("rabbitmqctl")
            .args(["-n", &format!("celeriac{}@localhost", self.port)])
            .args(args)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .output()
            .expect("rabbitmqctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RabbitServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl RabbitServer {
    fn stop(&self) {
        self.stop_node();
        let _ = std::process::Command::new("epmd")
            .args(["-port", &self.epmd_port.to_string(), "-kill"])
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The test binary's one RabbitMQ node, started on first use; each test uses virtual hosts or
/// queue names of its own.
pub(crate) fn rabbit() -> &'static RabbitServer {
    static SERVER: std::sync::OnceLock<RabbitServer> = std::sync::OnceLock::new();
    extern "C" fn stop_at_exit() {
        if let Some(s) = SERVER.get() {
            s.stop();
        }
    }
    SERVER.get_or_init(|| {
        // A static is never dropped: the node is stopped when the test binary exits.
        unsafe { libc::atexit(stop_at_exit) };
        RabbitServer::start()
    })
}

/// An app like [`base`] on the shared RabbitMQ node with Redis results, its queue named after
/// the test so tests sharing the node do not meet.
pub(crate) fn on_rabbit(name: &str, results: &RedisServer) -> AppBuilder {
    base(name).broker(&rabbit().url()).result_backend(&results.url()).configure({
        let q = format!("q.{name}");
        move |c| c.task_default_queue = q
    })
}
