"""The chat page's part that searches files too large for the context: the chat's searched files on their chips, and
the excerpts found for a message before it is sent (a mixin of ui.chat_page.ChatPage, kept apart for size)."""
from __future__ import annotations

from app.attachments import message_with_files
from app.chat_documents import excerpts_for
from engine.events import GenerationRequest
from ui.attachment_bar import SearchedFile
from ui.tasks import run_task


class SearchedFilesMixin:
    documents = None  # app.chat_documents.ChatDocuments, or None: no search here

    def _show_chat_files(self) -> None:
        """The open chat's searched files, as chips that stay until taken off."""
        kept = []
        docs = self.documents
        if docs is not None and self.conversation_id is not None and docs.index_path.exists():
            try:
                index = docs.index
                kept = [SearchedFile(f, name, index.parts(f)) for f, name in index.chat_files(self.conversation_id)]
            except Exception as e:  # a damaged index loses only the search, and says so
                self.show_notice(f"This chat's searched files cannot be shown: {e}")
        self.attachments.show_kept(kept)

    def _forget_file(self, file_id: int) -> None:
        if self.documents is not None and self.conversation_id is not None:
            self.documents.index.forget_for_chat(self.conversation_id, file_id)

    def _keep_searched(self, sent: list[SearchedFile]) -> None:
        for f in sent if self.documents is not None else ():
            self.documents.index.keep_for_chat(self.conversation_id, f.file_id, f.name)

    def _search_then_send(self, question: str, files, searched: list[SearchedFile], post) -> None:
        """Find the parts of the searched files that answer `question` (off the GUI thread), then `post(text)`."""
        settings = self.effective_settings()
        inline = message_with_files(question, files)
        history = self._history() if self.conversation_id is not None else self._system_only(settings)
        request = GenerationRequest(messages=history + [{"role": "user", "content": inline}],
                                    max_tokens=settings.max_tokens)
        try:
            worker = self.models.worker or self.models.load(settings.model)
            embeddings = self.documents.embeddings(worker, self.models.name or settings.model)
            index = self.documents.index
        except Exception as e:
            self.show_notice(str(e))
            return
        ids = [(f.file_id, f.name, f.parts) for f in searched]
        chat = self.conversation_id
        self.searching = True
        self._update_actions()
        self.show_notice(f"Searching {', '.join(f.name for f in searched)}…")

        def done(found) -> None:
            self.searching = False
            if self.conversation_id != chat:  # another chat was opened meanwhile: this one's message is not sent
                self._update_actions()
                self.show_notice("The message was not sent: another chat was opened while its files were searched.")
                return
            self.show_notice("")
            post(message_with_files(question, files, found))

        def failed(e: BaseException) -> None:
            self.searching = False
            self._update_actions()
            self.show_notice(f"The files could not be searched: {e}")

        run_task(lambda: excerpts_for(index, embeddings, worker, ids, question, request), done, failed)
