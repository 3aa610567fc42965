"""Protocol conformance of the aikit kernel, checked by jupyter_kernel_test (message schemas,
execute/complete/is_complete/inspect/history/display/clear_output round trips)."""

from __future__ import annotations

import shutil
import tempfile

import jupyter_kernel_test as jkt
import pytest
from jupyter_client.manager import KernelManager, start_new_kernel

from tests.support.kernels import STARTUP_TIMEOUT, kernel_env


class PrivateDataDir:
    """Mixed into a test class whose kernel got a private data directory (``_data_dir``, made in
    ``setUpClass``): removes it after the class's tests."""

    _data_dir: str

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            super().tearDownClass()  # type: ignore[misc]
        finally:
            shutil.rmtree(cls._data_dir, ignore_errors=True)


@pytest.mark.xdist_group("conformance")
class AikitKernelTests(PrivateDataDir, jkt.KernelTests):
    kernel_name = "aikit"
    language_name = "lua"
    file_extension = ".lua"

    code_hello_world = 'print("hello, world")'
    code_stderr = 'io.stderr:write("oops\\n")'

    # Only names that exist without prior state: globals, library members.
    completion_samples = [
        {"text": "string.fo", "matches": {"format"}},
        {"text": "pri", "matches": {"print"}},
        {"text": "math.fl", "matches": {"floor"}},
        {"text": "coroutine.wr", "matches": {"wrap"}},
        {"text": "retu", "matches": {"return"}},  # keywords complete too
    ]

    complete_code_samples = ['print("hi")', "x = 1", "1 + 1", "for i = 1, 3 do print(i) end", "return"]
    incomplete_code_samples = ["for i = 1, 3 do", "function f(x)", "x = [[long", "t = {", 'print("a",']
    invalid_code_samples = ["x = = 1", "end", "1 +* 2", "until x"]

    code_page_something = "print?"  # IPython-style help: a `page` payload with the inspect text

    code_generate_error = 'error("boom")'

    code_execute_result = [
        {"code": "1 + 1", "result": "2"},
        {"code": '"a" .. "b"', "result": '"ab"'},
        {"code": "{1, 2}", "result": "{1, 2}"},
        {"code": "return 6 * 7", "result": "42"},
    ]

    code_display_data = [
        {"code": 'display.html("<b>x</b>")', "mime": "text/html"},
        {"code": 'display.markdown("# t")', "mime": "text/markdown"},
        {"code": "display({1,2})", "mime": "application/json"},
        {"code": 'display.json({a = 1})', "mime": "application/json"},
    ]

    # Must match exactly one distinct source among code_execute_result (test_history's "unique"
    # subtest expects one entry; "n=3" expects three, and `1 + 1` runs many times by then).
    code_history_pattern = "1 + 1*"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "print"

    code_clear_output = "display.clear()"

    @classmethod
    def setUpClass(cls) -> None:
        # KernelTests.setUpClass calls start_new_kernel(kernel_name=...) with the inherited
        # environment; give this kernel a private data dir (history.sqlite) instead.
        cls._data_dir = tempfile.mkdtemp(prefix="aikit-conformance-")
        cls.km, cls.kc = start_new_kernel(
            startup_timeout=STARTUP_TIMEOUT, kernel_name=cls.kernel_name, env=kernel_env(cls._data_dir)
        )



@pytest.mark.xdist_group("conformance")
class AikitIopubWelcomeTests(PrivateDataDir, jkt.IopubWelcomeTests):
    """JEP 65: IOPub is an XPUB socket that sends `iopub_welcome` to each new subscriber, before
    any other message."""

    kernel_name = "aikit"
    support_iopub_welcome = True

    @classmethod
    def setUpClass(cls) -> None:
        # As the library does (KernelManager.start_kernel, then the test starts the channels),
        # but with a private data dir.
        cls._data_dir = tempfile.mkdtemp(prefix="aikit-welcome-")
        cls.km = KernelManager(kernel_name=cls.kernel_name)
        cls.km.start_kernel(env=kernel_env(cls._data_dir))
        cls.kc = cls.km.client()

