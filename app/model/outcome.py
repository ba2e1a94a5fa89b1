"""OperationOutcome documents built from our Issues (no HTTP here: Bundles and feeds use them too)."""
from app.errors import Issue


def operation_outcome(issues: list[Issue]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [issue_json(issue) for issue in issues]}


def issue_json(issue: Issue) -> dict:
    item = {"severity": issue.severity, "code": issue.code, "diagnostics": issue.diagnostics}
    if issue.expression:
        item["expression"] = list(issue.expression)
    return item


def information(message: str) -> dict:
    return operation_outcome([Issue("informational", message, severity="information")])
