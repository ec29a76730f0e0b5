#!/usr/bin/env python3
"""Drives `jobhost mcp` over stdio with the official MCP Python SDK (`mcp` on PyPI)
and prints, as one JSON object on stdout, what a real agent client saw:

- the handshake (protocol version, server name) and the tools listed, with schemas;
- `run_job` of `probe echo from-mcp`: its structured content and text;
- `job_status` of a job that does not exist: an isError result;
- `read_artifact`, `list_plugins`, `upload_file` and `pull_model` results;
- `start_workflow` of the workflow `mcp-flow`, then `workflow_status` until it ends;
- `run_job` of the `steps` plugin, which reports progress: the notifications;
- `run_job` of `probe sleep 60` with a progress callback: the progress
  notifications, then the call cancelled by the client (the SDK sends
  `notifications/cancelled`) and the job's status as `job_status` reports it after.

The SDK validates every structured result against the tool's output schema, so a
result that does not match its schema fails here. Used by host/tests/mcp.rs.
"""

import argparse
import asyncio
import json
import re
import sys
import time

import anyio
from mcp import Client, StdioServerParameters


def result_json(r):
    return {
        "is_error": bool(r.is_error),
        "structured": r.structured_content,
        "text": [c.text for c in r.content if getattr(c, "type", None) == "text"],
    }


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jobhost", required=True, help="path of the jobhost binary")
    p.add_argument("--server", required=True, help="URL of a running jobhost server")
    p.add_argument("--token-file", required=True)
    p.add_argument("--plugin", default="probe", help="installed probe component")
    p.add_argument("--steps-plugin", default="steps", help="installed steps plugin (reports progress)")
    p.add_argument("--mode", default="legacy", help="SDK connect mode: legacy (initialize) or auto")
    args = p.parse_args()

    params = StdioServerParameters(
        command=args.jobhost,
        args=["mcp", "--server", args.server, "--token-file", args.token_file],
    )
    report = {}
    async with Client(params, mode=args.mode, read_timeout_seconds=120) as client:
        report["protocol_version"] = client.protocol_version
        report["server_name"] = client.server_info.name if client.server_info else None
        listed = await client.list_tools()
        report["tools"] = {
            t.name: {"input_schema": t.input_schema, "output_schema": t.output_schema} for t in listed.tools
        }

        r = await client.call_tool("run_job", {"plugin": args.plugin, "args": ["echo", "from-mcp"]})
        report["run_job"] = result_json(r)

        r = await client.call_tool("job_status", {"job_id": "job_0000000000000000000000000000000a"})
        report["missing_job"] = result_json(r)

        job_id = (report["run_job"]["structured"] or {}).get("job_id")
        r = await client.call_tool("read_artifact", {"job_id": job_id, "name": "result.txt"})
        report["read_artifact"] = result_json(r)
        r = await client.call_tool("list_plugins", {})
        report["list_plugins"] = result_json(r)
        r = await client.call_tool("start_workflow", {"workflow": "mcp-flow", "params": {"who": "mcp"}})
        report["start_workflow"] = result_json(r)
        run_id = ((report["start_workflow"]["structured"] or {}).get("run") or {}).get("id")
        deadline = time.monotonic() + 30
        while run_id and time.monotonic() < deadline:
            r = await client.call_tool("workflow_status", {"run_id": run_id})
            report["workflow_status"] = result_json(r)
            status = (report["workflow_status"]["structured"] or {}).get("status")
            if status in ("success", "failed", "cancelled"):
                break
            await anyio.sleep(0.1)
        r = await client.call_tool("upload_file", {"path": "notes.txt", "content": "hello from mcp\n"})
        report["upload_file"] = result_json(r)
        files_id = (report["upload_file"]["structured"] or {}).get("files_id")
        if files_id and not report["upload_file"]["is_error"]:
            r = await client.call_tool("run_job", {"plugin": args.plugin, "args": ["read-input"], "files_id": files_id})
            report["read_input"] = result_json(r)
        r = await client.call_tool("pull_model", {"model": "example/none"})
        report["pull_model"] = result_json(r)

        # A job that reports its own progress: notifications carry its done/total.
        steps_progress = []

        async def on_steps(value, total, message):
            steps_progress.append({"progress": value, "total": total, "message": message})

        r = await client.call_tool(
            "run_job",
            {"plugin": args.steps_plugin, "input": {"steps": 4, "interval_ms": 700}},
            progress_callback=on_steps,
        )
        report["steps"] = result_json(r)
        report["steps_progress"] = steps_progress

        progress = []
        enough = anyio.Event()

        async def on_progress(value, total, message):
            progress.append({"progress": value, "total": total, "message": message})
            if len(progress) >= 2:
                enough.set()

        outcome = {}

        async def long_call():
            outcome["result"] = await client.call_tool(
                "run_job", {"plugin": args.plugin, "args": ["sleep", "60"]}, progress_callback=on_progress
            )

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(long_call)
            with anyio.move_on_after(30):
                await enough.wait()
            # Abandoning the call: the SDK sends notifications/cancelled for it.
            tg.cancel_scope.cancel()
        report["progress"] = progress
        report["long_call_returned"] = "result" in outcome

        job_id = None
        for n in progress:
            m = re.search(r"\b(job_[0-9a-z]+)\b", n["message"] or "")
            if m:
                job_id = m.group(1)
                break
        report["long_job_id"] = job_id
        status = None
        if job_id:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                r = await client.call_tool("job_status", {"job_id": job_id})
                status = (r.structured_content or {}).get("status")
                if status in ("cancelled", "completed", "failed", "timed_out"):
                    break
                await anyio.sleep(0.2)
        report["long_job_status"] = status
        report["long_job_seconds"] = round(time.monotonic() - started, 2)

    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    asyncio.run(main())
