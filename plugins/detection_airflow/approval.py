"""Approval of a model that won the promotion gate: by a person in the Airflow UI, or automatically.

:class:`PromotionApprovalOperator` is Airflow 3's :class:`ApprovalOperator` (human in the loop)
with the decision recorded by the pipeline. Which way it goes is read from the run's configuration
when it runs (``promotion.approval``, the ``approval`` param):

* ``auto``: approved at once, no form;
* ``manual``: the task asks (subject and body with the challenger's and champion's figures, the
  gate's reason, links to the model version and the report) and waits in ``awaiting_input``,
  holding no worker slot, until someone answers in the UI ("Required actions") or through the
  REST API, or ``promotion.approval_timeout_minutes`` pass (then it counts as a rejection).

Approve: the version becomes ``champion`` (and its model package ``Approved``) and the run
deploys it. Reject: the reason is kept on the version and the pipeline run, and the run ends
without deploying (Airflow skips the downstream deploy). The decision is recorded before the
operator returns or skips anything, and also pushed as the XCom ``approval`` (a skip pushes no
return value).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from detection_airflow.context import run_context
from detection_airflow.links import route

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The XCom keys: the gate's decision (pushed by ``promotion_gate``) and the approval's outcome.
DECISION_KEY = "decision"
APPROVAL_KEY = "approval"


class PromotionApprovalOperator(ApprovalOperator):
    """Approve or reject the gate's winner (see the module docstring).

    :param gate_task_id: the promotion gate, whose XCom ``decision`` names the version.
    :param evaluation_task_id: the evaluation whose figures the form shows and whose report it links.
    """

    def __init__(
        self, *, gate_task_id: str = "promotion_gate", evaluation_task_id: str = "evaluate", **kwargs: Any
    ) -> None:
        kwargs.setdefault("retries", 0)  # a second try would ask again after an answer
        params = ParamsDict(kwargs.pop("params", None) or {})  # the DAG's, merged in by Airflow (not in the form)
        params["reason"] = Param(
            "",
            type="string",
            title="Reason",
            source="task",
            description="Why: kept on the model version and the MLflow run.",
        )
        super().__init__(subject="Promote the challenger?", defaults=self.REJECT, params=params, **kwargs)
        self.gate_task_id = gate_task_id
        self.evaluation_task_id = evaluation_task_id

    def _decision(self, context: Context) -> dict[str, Any]:
        decision = context["ti"].xcom_pull(task_ids=self.gate_task_id, key=DECISION_KEY)
        if not isinstance(decision, dict) or "version" not in decision:
            raise ValueError(f"task {self.gate_task_id} left no {DECISION_KEY!r} XCom naming a model version")
        return decision

    def execute(self, context: Context) -> Any:
        from include import stages

        ctx = run_context(context)
        decision = self._decision(context)
        if ctx.config.promotion.approval == "auto":
            self.log.info("promotion.approval is auto: approving version %s", decision["version"])
            result = stages.approve(
                ctx, decision, approved=True, by="auto", reason=f"promotion.approval is auto; {decision['reason']}"
            )
            return self._finish(context, decision, result)
        request = stages.approval_request(ctx, decision, context["ti"].xcom_pull(task_ids=self.evaluation_task_id))
        ti = context["ti"]
        report = route(ti.dag_id, ti.run_id, self.evaluation_task_id, "report")
        self.subject = request["subject"]
        self.body = f"{request['body']}\n\n[report.html]({report})"
        self.response_timeout = timedelta(minutes=ctx.config.promotion.approval_timeout_minutes)
        self.log.info(
            "waiting for a person to approve version %s: %s",
            decision["version"],
            self.generate_link_to_ui_from_context(context=context),
        )
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from include import stages

        ctx = run_context(context)
        decision = self._decision(context)
        user = event.get("responded_by_user") or {}
        approved = "error" not in event and self.APPROVE in (event.get("chosen_options") or [])
        by = user.get("name") or user.get("id") or "timeout"
        reason = str((event.get("params_input") or {}).get("reason") or "").strip()
        if not reason:
            minutes = ctx.config.promotion.approval_timeout_minutes
            reason = f"no answer within {minutes:g} minutes" if by == "timeout" else "no reason given"
        result = stages.approve(ctx, decision, approved=approved, by=by, reason=reason)
        context["ti"].xcom_push(key=APPROVAL_KEY, value=result)
        super().execute_complete(context, event)  # a rejection skips the deploy here (and raises to do so)
        return self._finish(context, decision, result)

    def _finish(self, context: Context, decision: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """Push the outcome; an approved model is not deployed when deployment is switched off (``deploy=false``)."""
        context["ti"].xcom_push(key=APPROVAL_KEY, value=result)
        if not decision.get("deploy"):
            self.log.info("approved; deployment is switched off (deploy=false): skipping it")
            self.skip(
                ti=context["ti"],
                tasks=[t for t in context["task"].get_direct_relatives(upstream=False) if not t.is_teardown],
            )
        return result
