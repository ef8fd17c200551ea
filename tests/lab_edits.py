"""A student's unsaved edit in JupyterLab, for the tests of a lease that ends: a file saved
earlier is opened in the editor and a line is typed without saving; after the server has
stopped and started again, the file must hold the typed line too (saved for the student)."""

from __future__ import annotations

DRAFT = "/draft.txt"
SAVED = "first line\n"
TYPED = "typed but not saved"


def type_unsaved_edit(page, stack, student) -> None:
    """``page``: the student's JupyterLab; ``student``: their hub_client.Student."""
    with student.contents() as contents:
        contents.put(DRAFT, json={"type": "file", "format": "text", "content": SAVED})
    page.goto(f"{stack.url}/user/{student.name}/lab/tree{DRAFT}")
    editor = page.locator(".jp-FileEditor .cm-content").first
    editor.wait_for(timeout=60_000)
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.type(TYPED)


def assert_edit_kept(student) -> None:
    """Start the student's server again (CPU) and find the typed line saved."""
    again = student.start("cpu")
    assert again.get("ready"), again
    with student.contents() as contents:
        assert contents.get(DRAFT).json()["content"] == SAVED + TYPED
