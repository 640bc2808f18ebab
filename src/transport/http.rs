//! Streamable HTTP transport (issue 3): not built yet.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{config::HttpSettings, tools::AppState};

pub async fn serve(
    _state: Arc<AppState>,
    _settings: HttpSettings,
    _stop: CancellationToken,
) -> Result<(), String> {
    Err("--http is not available yet".into())
}
