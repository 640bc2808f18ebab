//! The gateway as a [`VideoBackend`]: one task id per video, links that live
//! 24 h after creation, no cancel, uploads turned into URLs.

use std::time::Duration;

use futures::future::BoxFuture;

use super::{
    client::GatewayClient,
    types::{CreateVideoRequest, LINK_LIFETIME},
};
use crate::{
    backend::{ApiKey, BackendKind, Capabilities, LinkLifetime, UpstreamError, VideoBackend},
    video::{Balance, FileRef, NewVideo, TaskSnapshot},
};

/// The gateway's upload takes the whole file as base64 in one JSON body.
pub const MAX_UPLOAD_BYTES: u64 = 20 * 1024 * 1024;

/// What the gateway can do.
pub fn capabilities() -> Capabilities {
    Capabilities {
        kind: BackendKind::Gateway,
        links: LinkLifetime::AfterCreation(LINK_LIFETIME),
        typical_render: "a few minutes",
        poll_after: Duration::from_secs(30),
        min_task_poll: Duration::ZERO,
        max_upload_bytes: MAX_UPLOAD_BYTES,
    }
}

impl VideoBackend for GatewayClient {
    fn capabilities(&self) -> &Capabilities {
        self.caps()
    }

    fn http_config(&self) -> &crate::backend::http::HttpConfig {
        self.config()
    }

    fn create<'a>(
        &'a self,
        key: &'a ApiKey,
        video: &'a NewVideo,
    ) -> BoxFuture<'a, Result<TaskSnapshot, UpstreamError>> {
        Box::pin(async move {
            let body = CreateVideoRequest::from(video);
            let task = self.create_video(key, &body).await?;
            Ok(task.snapshot(""))
        })
    }

    fn status<'a>(
        &'a self,
        key: &'a ApiKey,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskSnapshot, UpstreamError>> {
        Box::pin(async move {
            let task = self.get_task(key, task_id, self.sync_upstream()).await?;
            Ok(task.snapshot(task_id))
        })
    }

    fn balance<'a>(&'a self, key: &'a ApiKey) -> BoxFuture<'a, Result<Balance, UpstreamError>> {
        Box::pin(GatewayClient::balance(self, key))
    }

    fn upload<'a>(
        &'a self,
        key: &'a ApiKey,
        file_name: &'a str,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<FileRef, UpstreamError>> {
        Box::pin(async move {
            let url = self.upload_file(key, file_name, data).await?;
            Ok(FileRef::Url(url))
        })
    }
}
