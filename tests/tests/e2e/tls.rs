//! HTTPS: `--tls-cert`/`--tls-key` with a certificate made here (`rcgen`),
//! a real rustls client negotiating h2 or http/1.1 by ALPN, bad pairs
//! refused at start-up, and a renewed certificate served without a restart.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::harness::{Routes, Server, run_wedge};

/// A self-signed certificate for `localhost` and 127.0.0.1: (cert PEM, key PEM, cert DER).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = rcgen::generate_simple_self_signed(names).expect("generate a certificate");
    let der = made.cert.der().clone();
    (made.cert.pem(), made.signing_key.serialize_pem(), der)
}

/// What a TLS connection to `addr` trusting only `trusted` negotiated:
/// the ALPN protocol, the leaf certificate, and the TLS stream.
async fn connect(
    addr: SocketAddr,
    trusted: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<
    (
        Option<Vec<u8>>,
        CertificateDer<'static>,
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ),
    String,
> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).expect("a valid root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("a DNS name");
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = stream.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let leaf = session.peer_certificates().expect("a server certificate")[0].clone();
    Ok((alpn, leaf, stream))
}

fn write_pair(dir: &Path, cert: &str, key: &str) {
    // As a secret volume or an ACME client would: each file replaced whole.
    for (name, text) in [("key.pem", key), ("cert.pem", cert)] {
        let temporary = dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, text).expect("write PEM");
        std::fs::rename(&temporary, dir.join(name)).expect("rename PEM into place");
    }
}

fn tls_args(dir: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "--tls-cert".into(),
        dir.join("cert.pem").into(),
        "--tls-key".into(),
        dir.join("key.pem").into(),
    ]
}

#[tokio::test]
async fn https_negotiates_h2_or_http1_and_serves_a_renewed_certificate() {
    let routes = Routes::new().with("hello.wasm", "hello_v1");
    let pem = tempfile::tempdir().expect("a folder for the PEM files");
    let (cert, key, der) = certificate();
    write_pair(pem.path(), &cert, &key);
    let args = tls_args(pem.path());
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let server = Server::start_with(routes.path(), &args).await;

    // h2 offered first: h2 it is.
    let (alpn, leaf, stream) = connect(server.addr, &[&der], &[b"h2", b"http/1.1"])
        .await
        .expect("TLS handshake");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(leaf, der);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let request = http::Request::get("https://localhost/hello")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("h2 response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"v1");

    // A client that only speaks HTTP/1.1.
    let (alpn, _, stream) = connect(server.addr, &[&der], &[b"http/1.1"])
        .await
        .expect("TLS handshake");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = http::Request::get("/hello")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .expect("HTTP/1.1 response");
    assert_eq!(response.status(), 200);

    // Plain HTTP on the TLS port gets no answer.
    let plain = server
        .http1()
        .try_send(server.http1().get_request("/hello"))
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // Renewal: new files, same paths; the next handshakes get the new one.
    let (cert2, key2, der2) = certificate();
    write_pair(pem.path(), &cert2, &key2);
    let mut presented = None;
    for _ in 0..100 {
        let (_, leaf, _) = connect(server.addr, &[&der, &der2], &[b"h2"])
            .await
            .expect("TLS handshake during renewal");
        if leaf == der2 {
            presented = Some(leaf);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        presented.is_some(),
        "the renewed certificate was never served"
    );
    server.log.wait_for("TLS certificate reloaded").await;

    // A broken renewal keeps the working pair (counted: the renewal above
    // may have logged one, between its key and its certificate).
    const KEPT: &str = "still serving the previous TLS certificate";
    let before = server.log.text().matches(KEPT).count();
    std::fs::write(pem.path().join("cert.pem"), "not a certificate").expect("write");
    let mut after = before;
    for _ in 0..100 {
        after = server.log.text().matches(KEPT).count();
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        after > before,
        "the broken renewal was not reported:\n{}",
        server.log.text()
    );
    let (_, leaf, _) = connect(server.addr, &[&der2], &[b"h2"])
        .await
        .expect("TLS handshake after a broken renewal");
    assert_eq!(leaf, der2);
}

#[tokio::test]
async fn a_bad_certificate_or_key_is_a_clear_start_up_error() {
    let routes = Routes::new().with("hello.wasm", "hello_v1");
    let pem = tempfile::tempdir().expect("a folder for the PEM files");
    let (cert, _, _) = certificate();
    let (_, other_key, _) = certificate();
    let serve = |extra: Vec<std::ffi::OsString>| {
        let mut args: Vec<std::ffi::OsString> = vec![
            "serve".into(),
            routes.path().into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra);
        args
    };
    let run = |args: Vec<std::ffi::OsString>| async move {
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        run_wedge(&args).await
    };

    // The key of another certificate.
    write_pair(pem.path(), &cert, &other_key);
    let (code, _, stderr) = run(serve(tls_args(pem.path()))).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("key.pem") && stderr.contains("is not the key of the certificate"),
        "{stderr}"
    );

    // Not PEM at all.
    write_pair(pem.path(), "hello", &other_key);
    let (code, _, stderr) = run(serve(tls_args(pem.path()))).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cert.pem") && stderr.contains("holds no certificate"),
        "{stderr}"
    );

    // A missing file.
    let mut args = tls_args(pem.path());
    args[1] = pem.path().join("missing.pem").into();
    let (code, _, stderr) = run(serve(args)).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("missing.pem") && stderr.contains("cannot read --tls-cert"),
        "{stderr}"
    );

    // One without the other is a usage error.
    let (code, _, stderr) = run(serve(tls_args(pem.path())[..2].to_vec())).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

#[tokio::test]
async fn a_secret_volume_swap_renews_the_certificate() {
    // A Kubernetes secret volume: the files are symlinks through `..data`,
    // which the kubelet swaps to a new folder in one rename.
    let routes = Routes::new().with("hello.wasm", "hello_v1");
    let volume = tempfile::tempdir().expect("a folder for the secret volume");
    let dir = volume.path();
    let (cert, key, der) = certificate();
    std::fs::create_dir(dir.join("..2026_01")).expect("mkdir");
    std::fs::write(dir.join("..2026_01/tls.crt"), &cert).expect("write cert");
    std::fs::write(dir.join("..2026_01/tls.key"), &key).expect("write key");
    std::os::unix::fs::symlink("..2026_01", dir.join("..data")).expect("symlink");
    for name in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).expect("symlink");
    }
    let args: Vec<std::ffi::OsString> = vec![
        "--tls-cert".into(),
        dir.join("tls.crt").into(),
        "--tls-key".into(),
        dir.join("tls.key").into(),
    ];
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let server = Server::start_with(routes.path(), &args).await;
    let (_, leaf, _) = connect(server.addr, &[&der], &[b"h2"])
        .await
        .expect("TLS handshake");
    assert_eq!(leaf, der);

    let (cert2, key2, der2) = certificate();
    std::fs::create_dir(dir.join("..2026_02")).expect("mkdir");
    std::fs::write(dir.join("..2026_02/tls.crt"), &cert2).expect("write cert");
    std::fs::write(dir.join("..2026_02/tls.key"), &key2).expect("write key");
    std::os::unix::fs::symlink("..2026_02", dir.join("..data_tmp")).expect("symlink");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
    std::fs::remove_dir_all(dir.join("..2026_01")).expect("remove the old version");
    for _ in 0..100 {
        let (_, leaf, _) = connect(server.addr, &[&der, &der2], &[b"h2"])
            .await
            .expect("TLS handshake during the swap");
        if leaf == der2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the swapped certificate was never served:\n{}",
        server.log.text()
    );
}

#[tokio::test]
async fn a_client_silent_after_its_tls_handshake_is_disconnected() {
    let routes = Routes::new().with("hello.wasm", "hello_v1");
    let pem = tempfile::tempdir().expect("a folder for the PEM files");
    let (cert, key, der) = certificate();
    write_pair(pem.path(), &cert, &key);
    let mut args = tls_args(pem.path());
    args.extend(["--header-timeout".into(), "1s".into()]);
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let server = Server::start_with(routes.path(), &args).await;
    let (_, _, mut stream) = connect(server.addr, &[&der], &[b"h2", b"http/1.1"])
        .await
        .expect("TLS handshake");
    // The handshake is done; the client now sends nothing at all.
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(
        Duration::from_secs(6),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink),
    )
    .await;
    assert!(closed.is_ok(), "a silent TLS connection stayed open");
}
