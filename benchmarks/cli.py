"""`fleet bench`: serving benchmark through Kafka with baselines, simulated fleet scaling, and the
correctness smoke set."""

from __future__ import annotations

import asyncio
import math
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from fleet.settings import Settings

bench_app = typer.Typer(
    no_args_is_help=True,
    help="Benchmarks with `vllm bench serve` definitions (TTFT, TPOT, ITL, E2EL, goodput).",
)

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="TOML config file (or FLEET_CONFIG)")]
BootstrapOpt = Annotated[str | None, typer.Option(help="Kafka bootstrap servers (default: from the config)")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="results folder (default: benchmarks/results)")]
MachineOpt = Annotated[str | None, typer.Option(help="machine label for file names (default: arch-Ncpu)")]


def _rate(text: str) -> float:
    r = float(text)
    if not r > 0:
        raise typer.BadParameter(f"request rate must be positive or inf, not {text}")
    return r


@bench_app.command("run")
def run(
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    model: Annotated[str, typer.Option(help="configured model to benchmark")] = "small",
    num_prompts: Annotated[int, typer.Option(help="measured requests per load point")] = 200,
    warmups: Annotated[int, typer.Option(help="warm-up requests before each measured run (not counted)")] = 10,
    dataset: Annotated[str, typer.Option(help="'random' or a JSONL file of {prompt|messages, max_tokens}")] = "random",
    input_len: Annotated[int, typer.Option(help="random prompts: input tokens")] = 64,
    output_len: Annotated[int, typer.Option(help="output tokens (max_tokens); 0 = per JSONL line")] = 32,
    range_ratio: Annotated[float, typer.Option(help="random: lengths uniform in len*(1 +- r)")] = 0.0,
    seed: Annotated[int, typer.Option(help="fixes prompts and arrival times")] = 0,
    request_rate: Annotated[
        list[str] | None,
        typer.Option(help="req/s, Poisson or gamma gaps; repeat for a sweep; 'inf' = no pacing"),
    ] = None,
    burstiness: Annotated[float, typer.Option(help="gamma shape: 1 Poisson, <1 burstier, >1 more even")] = 1.0,
    ramp_up: Annotated[
        str | None, typer.Option(help="'linear' or 'exponential' from --ramp-start to --ramp-end")
    ] = None,
    ramp_start: Annotated[float, typer.Option(help="ramp-up start req/s")] = 1.0,
    ramp_end: Annotated[float, typer.Option(help="ramp-up end req/s")] = 10.0,
    max_concurrency: Annotated[int | None, typer.Option(help="at most this many requests in flight")] = None,
    goodput: Annotated[list[str] | None, typer.Option(help="SLOs, e.g. --goodput 'ttft:500 tpot:50 e2el:2000'")] = None,
    floor: Annotated[bool, typer.Option(help="measure the raw Kafka floor (3-hop echo)")] = True,
    inprocess: Annotated[bool, typer.Option(help="measure the same engine in process (no Kafka)")] = True,
    start_fleet: Annotated[
        bool, typer.Option(help="start an embedded broker, router and a worker for --model first")
    ] = False,
    timeout_s: Annotated[float, typer.Option("--timeout", help="per-request timeout (s)")] = 120.0,
    progress: Annotated[bool, typer.Option(help="progress bar")] = True,
    machine: MachineOpt = None,
    accelerator: Annotated[str | None, typer.Option(help="accelerator name for the report")] = None,
    headline_rate: Annotated[float | None, typer.Option(help="the load point the summary leads with")] = None,
    out: OutOpt = None,
) -> None:
    """Serving benchmark through Kafka, with the raw Kafka floor and the in-process engine in the same run."""
    from benchmarks.common.metrics import parse_slos
    from benchmarks.serving.arrivals import RampStrategy, RampUp
    from benchmarks.serving.report import headline_table, overhead_sentence, publish_serving
    from benchmarks.serving.runner import ServeConfig, run_serving

    try:
        slos = parse_slos(goodput or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ramp = RampUp(RampStrategy(ramp_up), ramp_start, ramp_end) if ramp_up else None
    rates = [_rate(r) for r in (request_rate or ["4"])]
    cfg = ServeConfig(
        model=model,
        num_prompts=num_prompts,
        warmups=warmups,
        dataset=dataset,
        input_len=input_len,
        output_len=output_len,
        range_ratio=range_ratio,
        seed=seed,
        rates=rates if not ramp else [math.inf],
        burstiness=burstiness,
        ramp_up=ramp,
        max_concurrency=max_concurrency,
        slos_ms=slos,
        floor=floor,
        inprocess=inprocess,
        timeout_s=timeout_s,
        progress=progress,
        machine=machine,
        accelerator=accelerator,
        headline_rate=headline_rate,
    )
    settings = _settings(config, bootstrap)

    async def main() -> None:
        if start_fleet:
            from benchmarks.serving.embedded import embedded_fleet

            async with embedded_fleet(settings, [model], config=Path(config) if config else None) as running:
                report = await run_serving(running, cfg, say=typer.echo)
        else:
            report = await run_serving(settings, cfg, say=typer.echo)
        files = publish_serving(report, out)
        head = report.points[report.headline]
        typer.echo(headline_table(head, simulated=report.meta.simulated))
        typer.echo(overhead_sentence(head))
        for kind, path in files.items():
            typer.echo(f"{kind}: {path}")

    _run(main())


@bench_app.command("scale")
def scale(
    bootstrap: BootstrapOpt = None,
    workers: Annotated[str, typer.Option(help="worker process counts, comma separated")] = "1,2,4,8",
    partitions: Annotated[str, typer.Option(help="model-topic partition counts, comma separated")] = "2,8",
    request_rate: Annotated[float, typer.Option(help="offered req/s at every point")] = 24.0,
    num_prompts: Annotated[int, typer.Option(help="measured requests per point")] = 120,
    output_len: Annotated[int, typer.Option(help="output tokens per request")] = 32,
    tokens_per_s: Annotated[float, typer.Option(help="simulated tokens/s per sequence")] = 50.0,
    max_running: Annotated[int, typer.Option(help="simulated batch size per worker")] = 4,
    rebalance: Annotated[bool, typer.Option(help="also measure the pause of a join, a leave and a crash")] = True,
    rebalance_rate: Annotated[float, typer.Option(help="req/s during the rebalance run")] = 6.0,
    event_every_s: Annotated[float, typer.Option(help="seconds between the join, the leave and the crash")] = 14.0,
    seed: int = 0,
    progress: bool = True,
    machine: MachineOpt = None,
    out: OutOpt = None,
) -> None:
    """Fleet scaling with the SIMULATED engine: throughput and TTFT against workers and partitions,
    and the pause a consumer-group rebalance causes."""
    from benchmarks.serving.report import publish_scale
    from benchmarks.serving.scale import ScaleConfig, run_scale

    cfg = ScaleConfig(
        workers=[int(x) for x in workers.split(",")],
        partitions=[int(x) for x in partitions.split(",")],
        request_rate=request_rate,
        num_prompts=num_prompts,
        output_len=output_len,
        tokens_per_s=tokens_per_s,
        max_running=max_running,
        rebalance=rebalance,
        rebalance_rate=rebalance_rate,
        event_every_s=event_every_s,
        seed=seed,
        progress=progress,
        machine=machine,
    )
    report = _run(run_scale(cfg, bootstrap=bootstrap, say=typer.echo))
    files = publish_scale(report, out)
    typer.echo(files["md"].read_text())
    for kind, path in files.items():
        typer.echo(f"{kind}: {path}")


@bench_app.command("smoke")
def smoke(
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    model: Annotated[list[str] | None, typer.Option(help="configured models to ask (default: all)")] = None,
    max_tokens: Annotated[int, typer.Option(help="max_tokens per answer")] = 64,
    reference: Annotated[
        bool, typer.Option(help="compare full-precision models with transformers' own greedy generate")
    ] = True,
    start_fleet: Annotated[bool, typer.Option(help="start an embedded broker, router and workers first")] = False,
    machine: MachineOpt = None,
    out: OutOpt = None,
) -> None:
    """Correctness smoke set: questions with unambiguous answers through the whole fleet (greedy); exits 1 if
    any check fails."""
    from benchmarks.serving.smoke_set import publish, run_smoke_set

    settings = _settings(config, bootstrap)
    models = model or settings.model_names

    async def main() -> bool:
        if start_fleet:
            from benchmarks.serving.embedded import embedded_fleet

            async with embedded_fleet(settings, models, config=Path(config) if config else None) as running:
                results = await run_smoke_set(running, models, max_tokens=max_tokens, reference=reference)
        else:
            results = await run_smoke_set(settings, models, max_tokens=max_tokens, reference=reference)
        files = publish(results, out, machine=machine, max_tokens=max_tokens)
        typer.echo(files["md"].read_text())
        for kind, path in files.items():
            typer.echo(f"{kind}: {path}")
        return all(r.passed for r in results)

    if not _run(main()):
        raise typer.Exit(1)


T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with SIGTERM and SIGINT cancelling the run so every started process is stopped."""

    async def runner() -> T:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        return await task

    try:
        return asyncio.run(runner())
    except asyncio.CancelledError:
        typer.echo("fleet bench: interrupted; started processes were stopped", err=True)
        raise typer.Exit(130) from None


def _settings(config: str | None, bootstrap: str | None) -> Settings:
    import msgspec

    from fleet.settings import load_settings

    try:
        s = load_settings(config)
    except (ValueError, OSError) as exc:
        typer.echo(f"fleet bench: {exc}", err=True)
        raise typer.Exit(2) from None
    from fleet.logging import configure_logging

    configure_logging(s.log_format, "warning")
    if bootstrap:
        s = msgspec.structs.replace(s, kafka=msgspec.structs.replace(s.kafka, bootstrap_servers=bootstrap))
    return s
