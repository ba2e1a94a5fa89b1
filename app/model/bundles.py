"""Bundle shapes shared by every entrance: searchset and history Bundles and their entries."""
from app.model.instants import format_instant
from app.store.resources import StoredResource


def bundle(bundle_type: str, entries: list[dict], links: dict[str, str] | None = None, total: int | None = None) -> dict:
    document = {"resourceType": "Bundle", "type": bundle_type}
    if total is not None:
        document["total"] = total
    if links:
        document["link"] = [{"relation": relation, "url": url} for relation, url in links.items()]
    if entries:
        document["entry"] = entries
    return document


def search_entry(base: str, stored: StoredResource, body: dict | None = None, mode: str = "match") -> dict:
    """A searchset entry (a match, or a resource _include'd); `body` is the resource as shown, default the stored one."""
    return {"fullUrl": f"{base}/{stored.type}/{stored.id}", "resource": body or stored.body, "search": {"mode": mode}}


def history_entry(base: str, stored: StoredResource) -> dict:
    entry = {"fullUrl": f"{base}/{stored.type}/{stored.id}"}
    if not stored.deleted:
        entry["resource"] = stored.body
    entry["request"] = {"method": stored.method, "url": stored.type if stored.method == "POST" else f"{stored.type}/{stored.id}"}
    entry["response"] = {"status": history_status(stored), **version_fields(stored)}
    return entry


def version_fields(stored: StoredResource) -> dict:
    return {"etag": stored.etag, "lastModified": format_instant(stored.last_updated)}


def history_status(stored: StoredResource) -> str:
    if stored.deleted:
        return "204 No Content"
    return "201 Created" if stored.version == 1 else "200 OK"
