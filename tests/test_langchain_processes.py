"""PersistLLMCache across real processes: concurrent writers, and restarts.

Each child is a fresh Python interpreter running a small script; nothing is shared
with the test process but the store path.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip(
    "langchain_core", reason="langchain-core is not installed: pip install -e '.[test]'"
)

from persistdict.integrations.langchain import PersistLLMCache

PROMPT = "Which store survives a restart?"
LLM_STRING = "[('_type', 'concurrency-test')]"

# Writes ROUNDS answers to one prompt, each made of two generations that name the same
# (writer, round); after every write it reads the answer back and checks that the two
# generations agree, i.e. that it never sees half of one answer and half of another.
WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, Generation
    from persistdict.integrations.langchain import PersistLLMCache

    path, writer, rounds, go, prompt, llm_string = sys.argv[1:]
    writer, rounds = int(writer), int(rounds)
    cache = PersistLLMCache(path)
    while not os.path.exists(go):  # start all writers together
        time.sleep(0.001)
    seen = set()
    for n in range(rounds):
        tag = f"{writer}:{n}"
        cache.update(prompt, llm_string, [
            ChatGeneration(
                message=AIMessage(
                    content=tag,
                    tool_calls=[{"name": "f", "args": {"tag": tag}, "id": tag}],
                ),
                generation_info={"writer": writer, "round": n},
            ),
            Generation(text=tag * 100),
        ])
        got = cache.lookup(prompt, llm_string)
        chat, text = got
        info = chat.generation_info
        assert text.text == chat.message.content * 100, got
        assert chat.message.tool_calls[0]["args"]["tag"] == chat.message.content, got
        assert chat.message.content == f"{info['writer']}:{info['round']}", got
        seen.add(info["writer"])
    cache.close()
    print(json.dumps(sorted(seen)))
    """
)

READER = textwrap.dedent(
    """
    import json, sys
    from persistdict.integrations.langchain import PersistLLMCache
    with PersistLLMCache(sys.argv[1]) as cache:
        got = cache.lookup(sys.argv[2], sys.argv[3])
    print(json.dumps(got[0].generation_info))
    """
)


def test_concurrent_writers_of_one_prompt_leave_one_whole_answer(
    tmp_path: Path,
) -> None:
    path, go = tmp_path / "llm", tmp_path / "go"
    writers, rounds = 4, 40
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(path),
                str(w),
                str(rounds),
                str(go),
                PROMPT,
                LLM_STRING,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    try:
        go.touch()
        for proc in procs:
            proc.wait(timeout=120)
    finally:
        for proc in procs:  # a failed or timed-out run leaves no child behind
            if proc.poll() is None:
                proc.kill()
    runs = [(proc.communicate(), proc.returncode) for proc in procs]
    for (out, err), returncode in runs:
        assert returncode == 0, err
        assert json.loads(out)  # each writer read back whole answers

    with PersistLLMCache(path) as cache:
        final = cache.lookup(PROMPT, LLM_STRING)
    assert final is not None
    info = final[0].generation_info
    assert info is not None
    # The last commit of all is the last round of one of the writers.
    assert info["round"] == rounds - 1
    assert info["writer"] in range(writers)
    # Every new process sees that same answer.
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", READER, str(path), PROMPT, LLM_STRING],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(out) == info


# An application run: a counting fake LLM and chat model behind set_llm_cache. The
# answers name the process that computed them, so a later run can tell where its
# answer came from.
APP = textwrap.dedent(
    """
    import json, os, sys
    from typing import Any
    from langchain_core.globals import set_llm_cache
    from langchain_core.language_models import BaseChatModel
    from langchain_core.language_models.llms import LLM
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from persistdict.integrations.langchain import PersistLLMCache

    class CountingLLM(LLM):
        calls: int = 0
        @property
        def _llm_type(self) -> str:
            return "counting-fake"
        def _call(self, prompt: str, stop: Any = None, run_manager: Any = None,
                  **kw: Any) -> str:
            self.calls += 1
            return f"computed by process {os.getpid()}"

    class CountingChat(BaseChatModel):
        calls: int = 0
        @property
        def _llm_type(self) -> str:
            return "counting-chat-fake"
        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                      **kw: Any) -> ChatResult:
            self.calls += 1
            message = AIMessage(
                content=f"chat by process {os.getpid()}",
                tool_calls=[
                    {"name": "lookup", "args": {"pid": os.getpid()}, "id": "c1"}
                ],
            )
            return ChatResult(generations=[ChatGeneration(message=message)])

    cache = PersistLLMCache(sys.argv[1])
    set_llm_cache(cache)
    llm, chat = CountingLLM(), CountingChat()
    answer = llm.invoke(sys.argv[2])
    reply = chat.invoke(sys.argv[2])
    cache.close()
    print(json.dumps({
        "answer": answer, "llm_calls": llm.calls,
        "reply": reply.content, "tool_args": reply.tool_calls[0]["args"],
        "chat_calls": chat.calls,
    }))
    """
)


def _run_app(path: Path, prompt: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", APP, str(path), prompt],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_a_cached_answer_is_served_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "llm"
    first = _run_app(path, PROMPT)
    assert first["llm_calls"] == 1
    assert first["chat_calls"] == 1

    second = _run_app(path, PROMPT)  # a new process: the models are not called
    assert second["llm_calls"] == 0
    assert second["chat_calls"] == 0
    assert second["answer"] == first["answer"]
    assert second["reply"] == first["reply"]
    assert second["tool_args"] == first["tool_args"]

    other = _run_app(path, "another prompt")
    assert other["llm_calls"] == 1
    assert other["answer"] != first["answer"]
