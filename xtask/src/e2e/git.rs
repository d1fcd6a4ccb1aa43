//! A git repository of the project served over smart HTTP on loopback: git's own `http-backend`
//! (CGI) behind a tiny HTTP/1.1 server, so Flux's source-controller clones it like any remote.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// Serves every bare repository under `root` at `http://127.0.0.1:<port>/<name>.git`.
pub struct GitServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    counters: Arc<Counters>,
}

/// What the server has answered so far: the fetches a git host would see.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fetches {
    /// `GET …/info/refs?service=git-upload-pack`: a client asking which commit each ref is at
    /// (every fetch starts so; source-controller stops here when the commit has not changed).
    pub advertisements: u64,
    /// `POST …/git-upload-pack` asking for objects: a clone or fetch that downloads a pack.
    pub packs: u64,
    /// `POST …/git-upload-pack` with protocol v2's `command=ls-refs`: an advertisement too.
    pub ls_refs: u64,
    /// Bytes of the answers to the pack requests (what the git host sends for them).
    pub pack_bytes: u64,
}

impl Fetches {
    /// What was served between `earlier` and `self`.
    pub fn since(self, earlier: Fetches) -> Fetches {
        Fetches {
            advertisements: self.advertisements.saturating_sub(earlier.advertisements),
            packs: self.packs.saturating_sub(earlier.packs),
            ls_refs: self.ls_refs.saturating_sub(earlier.ls_refs),
            pack_bytes: self.pack_bytes.saturating_sub(earlier.pack_bytes),
        }
    }
}

#[derive(Default)]
struct Counters {
    advertisements: AtomicU64,
    packs: AtomicU64,
    ls_refs: AtomicU64,
    pack_bytes: AtomicU64,
}

/// A request of the upload-pack (fetch) side of the smart HTTP protocol.
#[derive(Debug, PartialEq, Eq)]
enum FetchRequest {
    Advertisement,
    Pack,
    LsRefs,
}

/// Which fetch request this is, if any (pushes and anything else are not fetches).
fn classify(method: &str, path: &str, query: &str, body: &[u8]) -> Option<FetchRequest> {
    let upload_pack = query
        .split('&')
        .any(|pair| pair == "service=git-upload-pack");
    match method {
        "GET" if path.ends_with("/info/refs") && upload_pack => Some(FetchRequest::Advertisement),
        // Protocol v2 lists refs with a POST too; its body is pkt-lines, readable unless the
        // client compressed it (go-git, which source-controller uses, speaks v0/v1 only).
        "POST" if path.ends_with("/git-upload-pack") => {
            Some(if find(body, b"command=ls-refs").is_some() {
                FetchRequest::LsRefs
            } else {
                FetchRequest::Pack
            })
        }
        _ => None,
    }
}

impl GitServer {
    pub fn start(root: &Path) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the git server")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let root = root.to_path_buf();
        let flag = stop.clone();
        let counting = counters.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let root = root.clone();
                let counters = counting.clone();
                std::thread::spawn(move || {
                    if let Err(err) = serve(stream, &root, &counters) {
                        eprintln!("e2e: git server: {err:#}");
                    }
                });
            }
        });
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
            counters,
        })
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }

    /// The fetch requests received so far (counted when they arrive, answered or not).
    pub fn fetches(&self) -> Fetches {
        Fetches {
            advertisements: self.counters.advertisements.load(Ordering::SeqCst),
            packs: self.counters.packs.load(Ordering::SeqCst),
            ls_refs: self.counters.ls_refs.load(Ordering::SeqCst),
            pack_bytes: self.counters.pack_bytes.load(Ordering::SeqCst),
        }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request: parse it, run `git http-backend` with the CGI variables, relay its answer.
fn serve(mut stream: TcpStream, root: &Path, counters: &Counters) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        bail!("malformed request line {request_line:?}");
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(&mut reader)?
    } else {
        let length: usize = header("content-length").unwrap_or("0").parse()?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    let request = classify(method, path, query, &body);
    let counter = match request {
        Some(FetchRequest::Advertisement) => Some(&counters.advertisements),
        Some(FetchRequest::Pack) => Some(&counters.packs),
        Some(FetchRequest::LsRefs) => Some(&counters.ls_refs),
        None => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::SeqCst);
    }
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_TYPE", header("content-type").unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(protocol) = header("git-protocol") {
        cgi.env("GIT_PROTOCOL", protocol);
    }
    if let Some(encoding) = header("content-encoding") {
        cgi.env("HTTP_CONTENT_ENCODING", encoding);
    }
    let mut child = cgi.spawn().context("cannot run `git http-backend`")?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    // Write the body from another thread: a large request and a large answer would otherwise
    // deadlock on full pipes.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let mut output = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout was piped")
        .read_to_end(&mut output)?;
    child.wait()?;
    let _ = writer.join();
    let split = find(&output, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(&output, b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        bail!("git http-backend printed no CGI header for {method} {path}");
    };
    let cgi_headers = String::from_utf8_lossy(&output[..end]).into_owned();
    let content = &output[end + sep..];
    if request == Some(FetchRequest::Pack) {
        let bytes = u64::try_from(content.len()).unwrap_or(u64::MAX);
        counters.pack_bytes.fetch_add(bytes, Ordering::SeqCst);
    }
    let mut status = "200 OK".to_string();
    let mut response = Vec::new();
    for line in cgi_headers.lines() {
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => {
                status = value.trim().to_string();
            }
            Some(_) => response.push(line.to_string()),
            None => {}
        }
    }
    write!(stream, "HTTP/1.1 {status}\r\n")?;
    for line in response {
        write!(stream, "{line}\r\n")?;
    }
    write!(
        stream,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    )?;
    stream.write_all(content)?;
    stream.flush()?;
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a `Transfer-Encoding: chunked` body (git sends large pushes and fetches that way).
fn read_chunked(reader: &mut impl BufRead) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .context("bad chunk size")?;
        if size == 0 {
            let mut trailer = String::new();
            reader.read_line(&mut trailer)?;
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// A working clone whose commits are pushed to the bare repository the server exports.
pub struct Repo {
    pub work: PathBuf,
    pub bare: PathBuf,
    pub branch: String,
}

impl Repo {
    /// Copies the files of `source` (tracked and untracked-but-not-ignored: the current tree,
    /// uncommitted changes included) into `work`, with `flux/` taken from `flux_from` if given.
    pub fn copy_tree(
        sh: &Shell,
        source: &Path,
        flux_from: Option<&Path>,
        work: &Path,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(work)?;
        let files = {
            let _dir = sh.push_dir(source);
            cmd!(sh, "git ls-files -z --cached --others --exclude-standard")
                .quiet()
                .read()
                .with_context(|| format!("{} is not a git checkout", source.display()))?
        };
        for file in files.split('\0').filter(|f| !f.is_empty()) {
            if flux_from.is_some() && file.starts_with("flux/") {
                continue;
            }
            let from = source.join(file);
            if !from.is_file() {
                continue; // deleted in the working tree but still in the index
            }
            let to = work.join(file);
            std::fs::create_dir_all(to.parent().expect("a file has a parent"))?;
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
        if let Some(flux) = flux_from {
            copy_dir(flux, &work.join("flux"))?;
        }
        Ok(())
    }

    /// Makes `work` a repository on `branch` whose commits go to `<served>/billing-platform.git`.
    pub fn init(sh: &Shell, work: &Path, served: &Path, branch: &str) -> anyhow::Result<Self> {
        let bare = served.join("billing-platform.git");
        let _dir = sh.push_dir(work);
        cmd!(sh, "git init -q -b {branch}").quiet().run()?;
        cmd!(sh, "git init -q --bare -b {branch} {bare}")
            .quiet()
            .run()?;
        Ok(Repo {
            work: work.to_path_buf(),
            bare,
            branch: branch.to_string(),
        })
    }

    /// Commits everything in the working clone and pushes it; returns the commit id.
    pub fn commit(&self, sh: &Shell, message: &str) -> anyhow::Result<String> {
        let _dir = sh.push_dir(&self.work);
        let _name = sh.push_env("GIT_AUTHOR_NAME", "e2e");
        let _mail = sh.push_env("GIT_AUTHOR_EMAIL", "e2e@example.invalid");
        let _cname = sh.push_env("GIT_COMMITTER_NAME", "e2e");
        let _cmail = sh.push_env("GIT_COMMITTER_EMAIL", "e2e@example.invalid");
        cmd!(sh, "git add -A").quiet().run()?;
        cmd!(sh, "git commit -q --allow-empty -m {message}")
            .quiet()
            .run()?;
        let bare = &self.bare;
        let branch = &self.branch;
        cmd!(sh, "git push -q {bare} HEAD:refs/heads/{branch}")
            .quiet()
            .run()?;
        Ok(cmd!(sh, "git rev-parse HEAD").quiet().read()?)
    }

    /// Reverts the last commit and pushes; returns the new commit id.
    pub fn revert_last(&self, sh: &Shell) -> anyhow::Result<String> {
        {
            let _dir = sh.push_dir(&self.work);
            let _name = sh.push_env("GIT_COMMITTER_NAME", "e2e");
            let _mail = sh.push_env("GIT_COMMITTER_EMAIL", "e2e@example.invalid");
            cmd!(sh, "git revert --no-edit --no-commit HEAD")
                .quiet()
                .run()?;
        }
        self.commit(sh, "revert the tenancy violation")
    }
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_over_http_sees_the_pushed_commit_and_the_next_one() {
        let sh = Shell::new().unwrap();
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let dir = scratch.path().to_owned();
        let source = dir.join("source");
        std::fs::create_dir_all(source.join("flux")).unwrap();
        std::fs::write(source.join("flux/a.yaml"), "a: 1\n").unwrap();
        {
            let _d = sh.push_dir(&source);
            cmd!(sh, "git init -q").run().unwrap();
        }
        let work = dir.join("work");
        Repo::copy_tree(&sh, &source, None, &work).unwrap();
        let repo = Repo::init(&sh, &work, &dir.join("served"), "main").unwrap();
        repo.commit(&sh, "first").unwrap();
        let server = GitServer::start(&dir.join("served")).unwrap();
        let url = server.url("billing-platform.git");
        let clone = dir.join("clone");
        cmd!(sh, "git clone -q {url} {clone}").run().unwrap();
        assert_eq!(
            std::fs::read_to_string(clone.join("flux/a.yaml")).unwrap(),
            "a: 1\n"
        );
        std::fs::write(repo.work.join("flux/a.yaml"), "a: 2\n").unwrap();
        let head = repo.commit(&sh, "change").unwrap();
        let before = server.fetches();
        assert!(
            before.advertisements >= 1 && before.packs >= 1,
            "{before:?}"
        );
        let remote = cmd!(
            sh,
            "git -c protocol.version=0 ls-remote {url} refs/heads/main"
        )
        .read()
        .unwrap();
        assert!(remote.starts_with(&head), "{remote} vs {head}");
        // ls-remote over protocol v0 is one advertisement and no pack.
        let after = server.fetches().since(before);
        assert_eq!(
            after,
            Fetches {
                advertisements: 1,
                packs: 0,
                ls_refs: 0,
                pack_bytes: 0
            }
        );
        drop(server);
    }

    #[test]
    fn fetch_requests_are_told_apart_from_pushes_and_each_other() {
        let info = "service=git-upload-pack";
        assert_eq!(
            classify("GET", "/r.git/info/refs", info, b""),
            Some(FetchRequest::Advertisement)
        );
        assert_eq!(
            classify("POST", "/r.git/git-upload-pack", "", b"0032want 0123"),
            Some(FetchRequest::Pack)
        );
        assert_eq!(
            classify(
                "POST",
                "/r.git/git-upload-pack",
                "",
                b"0014command=ls-refs\n"
            ),
            Some(FetchRequest::LsRefs)
        );
        let push = "service=git-receive-pack";
        assert_eq!(classify("GET", "/r.git/info/refs", push, b""), None);
        assert_eq!(classify("POST", "/r.git/git-receive-pack", "", b""), None);
        assert_eq!(classify("GET", "/r.git/HEAD", "", b""), None);
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let mut input = &b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"[..];
        assert_eq!(read_chunked(&mut input).unwrap(), b"abcde");
    }
}
