//! Binding: one listening socket per worker thread on the same port.

use std::io;
use std::net::SocketAddr;
use tokio::net::TcpSocket;

/// Binds one socket per worker thread to `addr`, not yet listening (see [`TcpSocket::listen`]).
///
/// With several workers each socket sets `SO_REUSEPORT`, so the kernel spreads new connections
/// over the workers' listeners and no connection moves between threads (as Envoy's workers
/// listen on Linux); port 0 is resolved by the first socket and shared by the rest. One worker binds
/// plainly, as any server does.
///
/// `SO_REUSEPORT` would also let a second provider of the same user share a port silently; a
/// plain bind first makes a port that anything listens on an `AddrInUse` error, as it is for one
/// worker.
pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<Vec<TcpSocket>> {
    let socket = |addr: SocketAddr, reuseport: bool| -> io::Result<TcpSocket> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As tokio's own `TcpListener::bind`: a restarted server need not wait out TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(reuseport)?;
        socket.bind(addr)?;
        Ok(socket)
    };
    let shared = workers > 1;
    if shared && addr.port() != 0 {
        drop(socket(addr, false)?);
    }
    let first = socket(addr, shared)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(socket(bound, true)?);
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};

    /// `workers` listeners sharing one free loopback port.
    fn listening(workers: usize) -> Vec<TcpListener> {
        bind("127.0.0.1:0".parse().unwrap(), workers)
            .unwrap()
            .into_iter()
            .map(|socket| socket.listen(128).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn several_workers_share_one_port_and_the_kernel_spreads_connections() {
        let listeners = listening(3);
        let port = listeners[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(
            listeners
                .iter()
                .all(|l| l.local_addr().unwrap().port() == port)
        );
        // 48 connections over 3 listeners: one left without any has probability 3·(2/3)^48 ≈ 1e-8.
        let mut clients = Vec::new();
        for _ in 0..48 {
            clients.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
        let mut accepted = Vec::new();
        for listener in &listeners {
            let mut count = 0;
            while let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(200), listener.accept()).await
            {
                count += 1;
            }
            accepted.push(count);
        }
        assert_eq!(accepted.iter().sum::<usize>(), 48, "{accepted:?}");
        assert!(accepted.iter().all(|&n| n > 0), "{accepted:?}");
    }

    #[tokio::test]
    async fn one_worker_binds_plainly_so_a_taken_port_is_an_error() {
        let taken = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap().remove(0);
        let addr = taken.local_addr().unwrap();
        let _listening = taken.listen(16).unwrap();
        let error = bind(addr, 1).expect_err("the port is taken");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        // Several workers set SO_REUSEPORT, which a plainly bound listener does not share either.
        assert!(bind(addr, 2).is_err());
    }

    #[tokio::test]
    async fn a_second_server_with_several_workers_cannot_share_a_port_silently() {
        let first = listening(2);
        let addr = first[0].local_addr().unwrap();
        for workers in [1, 2, 3] {
            let error = bind(addr, workers).expect_err("the port is taken");
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{workers} workers");
        }
    }
}
