//! The tasks extension (SEP-2663, MCP 2026-07-28) across the merged server: a tool call an
//! upstream turns into a task is remembered with that upstream, so `tasks/get`, `tasks/update`
//! and `tasks/cancel` for its id reach the same upstream. The merged server offers the
//! extension once an upstream it has reached offers it.

use rmcp::{
    ErrorData, RoleServer,
    model::{
        CancelTaskParams, CancelTaskRequest, ClientRequest, GetTaskParams, GetTaskRequest, GetTaskResult,
        ServerCapabilities, ServerResult, TASKS_EXTENSION_ID, UpdateTaskParams, UpdateTaskRequest,
    },
    service::RequestContext,
};

use super::{Aggregator, lock};

/// Task ids remembered at once; the oldest are forgotten first.
const MAX_TASKS: usize = 10_000;

/// An upstream's handshake offers the tasks extension.
pub(super) fn offered(capabilities: &ServerCapabilities) -> bool {
    capabilities.extensions.as_ref().is_some_and(|e| e.contains_key(TASKS_EXTENSION_ID))
}

impl Aggregator {
    /// Notes what an upstream offers (from its handshake).
    pub(super) fn note_capabilities(&self, capabilities: &ServerCapabilities) {
        if offered(capabilities) {
            self.0.offers_tasks.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(super) fn offers_tasks(&self) -> bool {
        self.0.offers_tasks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remembers that upstream `index` runs task `task_id`.
    pub(super) fn own_task(&self, task_id: &str, index: usize) {
        let mut owners = lock(&self.0.task_owners);
        if owners.1.len() >= MAX_TASKS
            && let Some(oldest) = owners.0.pop_front()
        {
            owners.1.remove(&oldest);
        }
        if owners.1.insert(task_id.to_owned(), index).is_none() {
            owners.0.push_back(task_id.to_owned());
        }
    }

    /// The upstream running `task_id`: the one that created it, or with a single upstream, that one.
    fn task_owner(&self, task_id: &str) -> Result<usize, ErrorData> {
        if let Some(index) = lock(&self.0.task_owners).1.get(task_id) {
            return Ok(*index);
        }
        if self.0.slots.len() == 1 {
            return Ok(0);
        }
        Err(ErrorData::invalid_params(format!("unknown task {task_id}"), None))
    }

    pub(super) async fn relay_get_task(
        &self,
        mut request: GetTaskParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        request.meta = None;
        let index = self.task_owner(&request.task_id)?;
        match self.forward(index, ClientRequest::GetTaskRequest(GetTaskRequest::new(request)), context).await? {
            ServerResult::GetTaskResult(result) => Ok(result),
            _ => Err(ErrorData::internal_error(
                format!("upstream `{}` sent an unexpected answer", self.name_of(index)),
                None,
            )),
        }
    }

    pub(super) async fn relay_update_task(
        &self,
        mut request: UpdateTaskParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        request.meta = None;
        let index = self.task_owner(&request.task_id)?;
        self.forward(index, ClientRequest::UpdateTaskRequest(UpdateTaskRequest::new(request)), context).await.map(drop)
    }

    pub(super) async fn relay_cancel_task(
        &self,
        mut request: CancelTaskParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        request.meta = None;
        let index = self.task_owner(&request.task_id)?;
        self.forward(index, ClientRequest::CancelTaskRequest(CancelTaskRequest::new(request)), context).await.map(drop)
    }
}
