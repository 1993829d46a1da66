"""A one-line question (tags, notes, a new step total) with validation as you type."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class PromptScreen(ModalScreen[str | None]):
    """Dismisses with the text on enter (when ``check`` finds nothing wrong), None on escape.

    ``check`` returns an error message or None; the message shows under the field and
    enter is refused until it is fixed.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, question: str, value: str = "", *, check: Callable[[str], str | None] | None = None, hint: str = ""
    ) -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.check = check
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, id="question")
            yield Input(self.value, id="answer")
            yield Static(self.hint, id="prompt-hint", classes="hint")
            yield Static("", id="prompt-error", classes="error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _error(self, text: str) -> str | None:
        return self.check(text) if self.check is not None else None

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#prompt-error", Static).update(self._error(event.value) or "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        error = self._error(event.value)
        if error:
            self.query_one("#prompt-error", Static).update(error)
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
