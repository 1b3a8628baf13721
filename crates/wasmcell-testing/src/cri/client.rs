//! The [`CriClient`] itself: the connection to the CRI plugin's unix socket, its own tokio
//! runtime, the raw `RuntimeService` and `ImageService` clients, and [`CriClient::call`], which
//! runs any call of theirs to its end or to the client's deadline.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use super::{Status, CALL_TIMEOUT};

/// A blocking CRI client: every method runs one CRI call to its end or to its deadline.
#[derive(Debug)]
pub struct CriClient {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    socket: PathBuf,
    timeout: Duration,
}

impl CriClient {
    /// Connect to the CRI plugin serving on `socket` (containerd's gRPC socket).
    ///
    /// # Errors
    /// When the runtime cannot be built or nothing answers on the socket within
    /// [`CALL_TIMEOUT`].
    pub fn connect(socket: &Path) -> Result<CriClient, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
        let path = socket.to_path_buf();
        // The URI is not used: the connector always dials the unix socket.
        let endpoint = Endpoint::from_static("http://[::1]:50051")
            .connect_timeout(Duration::from_secs(10))
            .timeout(CALL_TIMEOUT);
        let connect = endpoint.connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }));
        // The timer must be created inside the runtime.
        let channel = match rt.block_on(async { tokio::time::timeout(CALL_TIMEOUT, connect).await })
        {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(format!("connecting to {}: {e:?}", socket.display())),
            Err(_) => {
                return Err(format!(
                    "connecting to {}: no answer within {CALL_TIMEOUT:?}",
                    socket.display()
                ))
            }
        };
        Ok(CriClient {
            rt,
            channel,
            socket: socket.to_path_buf(),
            timeout: CALL_TIMEOUT,
        })
    }

    /// The same client with another deadline per call.
    pub fn with_timeout(mut self, timeout: Duration) -> CriClient {
        self.timeout = timeout;
        self
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A raw `RuntimeService` client on this connection, for calls without a helper here; run
    /// its futures with [`CriClient::call`].
    pub fn runtime_service(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// A raw `ImageService` client on this connection; run its futures with
    /// [`CriClient::call`].
    pub fn image_service(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    /// Run one call (a future of a raw client) to its end, or fail with
    /// [`Code::DeadlineExceeded`](super::Code::DeadlineExceeded) after the client's deadline.
    /// `what` names it in errors.
    ///
    /// # Errors
    /// The call's status, or the deadline.
    pub fn call<T, F>(&self, what: &str, call: F) -> Result<T, Status>
    where
        F: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let timeout = self.timeout;
        match self
            .rt
            .block_on(async move { tokio::time::timeout(timeout, call).await })
        {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}
