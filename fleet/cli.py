"""The `fleet` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Annotated

import msgspec
import typer

from fleet.settings import TENANT_NAME, BrokerStorage, Settings, load_settings

# -h as well as --help everywhere (child contexts inherit it); help text is plain text, so `[[tenants]]` stays
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # main() turns infrastructure failures into one line; --debug shows the traceback
    help="llm-fleet: LLM inference behind Kafka.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
contracts_app = typer.Typer(no_args_is_help=True, help="The public wire contract.", rich_markup_mode=None)
models_app = typer.Typer(
    no_args_is_help=True, help="Model checkpoints: convert GGUF, build the demo pair.", rich_markup_mode=None
)
app.add_typer(contracts_app, name="contracts")
app.add_typer(models_app, name="models")
tenants_app = typer.Typer(
    no_args_is_help=True, help="Tenants: API keys and the [[tenants]] config.", rich_markup_mode=None
)
app.add_typer(tenants_app, name="tenants")

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="TOML config file (or FLEET_CONFIG)")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"llm-fleet {version('llm-fleet')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """llm-fleet: LLM inference behind Kafka."""


def _settings(config: str | None) -> Settings:
    from fleet.logging import configure_logging

    try:
        s = load_settings(config)
    except (ValueError, OSError) as exc:
        typer.echo(f"fleet: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(s.log_format, s.log_level)
    return s


@app.command()
def up(
    config: ConfigOpt = None,
    port: Annotated[int | None, typer.Option(help="embedded broker port (default 9092)")] = None,
    smoke: Annotated[bool, typer.Option(help="send one request and stream it once the fleet is up")] = True,
    for_seconds: Annotated[float | None, typer.Option(help="stop after this many seconds (default: Ctrl-C)")] = None,
    storage: Annotated[
        BrokerStorage | None,
        typer.Option(help="the embedded broker's storage: journal (survives restarts) or memory (default: settings)"),
    ] = None,
) -> None:
    """Start the embedded broker (unless FLEET_KAFKA_BOOTSTRAP is set), the router and one worker per model."""
    from fleet.up import up as run_up

    s = _settings(config)
    if port is not None:
        s = msgspec.structs.replace(s, kafka=msgspec.structs.replace(s.kafka, embedded_port=port))
    if storage is not None:
        s = msgspec.structs.replace(s, kafka=msgspec.structs.replace(s.kafka, embedded_storage=storage))
    config = config or os.environ.get("FLEET_CONFIG")
    config = os.path.abspath(config) if config else None  # the children read it too
    raise typer.Exit(asyncio.run(run_up(s, smoke=smoke, for_seconds=for_seconds, config=config)))


@app.command()
def broker(config: ConfigOpt = None, port: Annotated[int | None, typer.Option()] = None) -> None:
    """Run only the embedded Tansu broker, with the fleet's topics, until Ctrl-C."""
    from fleet.broker import embedded_broker
    from fleet.kafka import ensure_topics, fleet_topics
    from fleet.runtime import run_service

    s = _settings(config)
    if not s.kafka.embedded:
        typer.echo(f"FLEET_KAFKA_BOOTSTRAP is set ({s.kafka.bootstrap}): not starting an embedded broker", err=True)
        raise typer.Exit(2)
    k = s.kafka

    async def main(stop: asyncio.Event) -> None:
        async with embedded_broker(s, port=port) as b:
            s2 = msgspec.structs.replace(s, kafka=msgspec.structs.replace(k, embedded_port=b.port))
            await ensure_topics(s2, fleet_topics(s2))
            typer.echo(f"broker ready on {b.bootstrap}; Ctrl-C to stop", err=True)
            await stop.wait()

    run_service(main)


router_app = typer.Typer(
    help="Run the router (`fleet router --config X`), or train and query its classifier.", rich_markup_mode=None
)
app.add_typer(router_app, name="router")


@router_app.callback(invoke_without_command=True)
def router(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run the router (group llm-router on llm.requests); with a subcommand, that instead."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = config  # the subcommands' default config
        return
    from fleet.runtime import run_service
    from router.complexity.model import ClassifierError
    from router.metrics import serve_router
    from router.service import RouterService

    s = _settings(config)
    try:
        service = RouterService(s)
    except ClassifierError as exc:  # a missing or broken artifact, a bad tier: say what, do not start
        typer.echo(f"fleet router: {exc}", err=True)
        raise typer.Exit(2) from None
    # /metrics, /livez, /readyz (when on): read from the service's counters and views at scrape time, on a thread
    server = serve_router(s, service)
    try:
        run_service(service.run)
    finally:
        if server is not None:
            server.close()


def _checkout_on_path() -> None:
    """The classifier's training (training/) and labelled set (corpora/) come with a checkout, not with the installed
    package, which ships only the trained artifact. An editable install (make) maps the installed packages alone,
    so `fleet router train` looks for the checkout beside them; installed from a wheel, it says where to get it."""
    from importlib.util import find_spec
    from pathlib import Path

    if find_spec("training") is not None:  # the repository root is on the path (pytest, python -m, lint-imports)
        return
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "training" / "complexity.py").is_file():
        typer.echo(
            "fleet router train: the training code and its labelled data are not installed (the package ships the "
            "trained artifact only); run it from a checkout of the repository, where training/ and corpora/ are",
            err=True,
        )
        raise typer.Exit(2)
    sys.path.append(str(checkout))


@router_app.command("train")
def router_train(
    out: Annotated[str, typer.Option(help="where to write the artifact (JSON)")] = "complexity-v2.json",
    data: Annotated[
        str | None, typer.Option(help="labelled JSONL (default: corpora/complexity/prompts.jsonl in the checkout)")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    cheap_share: Annotated[float, typer.Option(help="target share of traffic to the cheapest tier")] = 0.6,
) -> None:
    """Train the complexity classifier on the data's train split, measure it on the held-out split, write the
    artifact (the router loads it from router.classifier_path). Runs from a checkout of the repository."""
    from pathlib import Path

    from router.complexity.model import encode_artifact

    _checkout_on_path()
    from training.complexity import DEFAULT_DATA, train

    try:
        artifact = train(data or DEFAULT_DATA, seed=seed, cheap_share=cheap_share)
    except (ValueError, OSError, KeyError) as exc:
        typer.echo(f"fleet router train: {exc}", err=True)
        raise typer.Exit(2) from None
    Path(out).write_bytes(encode_artifact(artifact))
    h = artifact.heldout
    typer.echo(
        f"wrote {out}: {len(artifact.features)} weights, threshold {artifact.threshold} (cheap share target "
        f"{cheap_share:.0%})\nheld-out ({h.requests} requests, {h.complex} complex): {h.cheap_share:.1%} to the "
        f"cheap tier, {h.complex_misrouted:.1%} of complex misrouted there, {h.simple_up_share:.1%} of simple sent "
        f"up, AUC {h.auc}"
    )


@router_app.command("explain")
def router_explain(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="the user's turn")],
    system: Annotated[str | None, typer.Option(help="a system prompt (context for the classifier)")] = None,
    max_tokens: Annotated[int, typer.Option()] = 128,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
    config: ConfigOpt = None,
) -> None:
    """Print the tier "auto" would choose for PROMPT, its score and the signals behind it."""
    from contracts.messages import ChatMessage, Request
    from router.policies.classify import Classifier, ClassifierError

    s = _settings(config or ctx.obj)
    r = s.router
    try:
        classifier = Classifier(r.tiers, s.model_names, r.classifier_path, r.classify_max_chars)
    except ClassifierError as exc:
        typer.echo(f"fleet router explain: {exc}", err=True)
        raise typer.Exit(2) from None
    messages = [ChatMessage("system", system)] if system else []
    req = Request(id="explain", reply_to="-", messages=[*messages, ChatMessage("user", prompt)], max_tokens=max_tokens)
    d = classifier.decide(req)
    thresholds = {t.name: t.max_score for t in classifier.tiers}
    art = classifier.model.artifact
    if as_json:
        out = {"tier": d.tier.name, "model": d.tier.model, "score": d.score, "signals": list(d.signals)}
        out |= {"thresholds": {k: (None if v == float("inf") else v) for k, v in thresholds.items()}}
        typer.echo(json.dumps(out | {"classifier": classifier.model.source}))
        return
    bounds = ", ".join(f"{k} <= {v:g}" for k, v in thresholds.items())
    h = art.heldout
    typer.echo(
        f"tier: {d.tier.name} (model {d.tier.model})\nscore: {d.score:.4f} (tiers: {bounds})\n"
        f"signals: {', '.join(d.signals) or '-'}\n"
        f"classifier: {classifier.model.source} (seed {art.training.get('seed')}; held-out: {h.cheap_share:.1%} to "
        f"the cheap tier, {h.complex_misrouted:.1%} of complex misrouted)"
    )


@router_app.command("cost")
def router_cost(
    ctx: typer.Context,
    reference: Annotated[str | None, typer.Option(help="model to compare with (default: the last tier's)")] = None,
    timeout_s: Annotated[float, typer.Option()] = 30.0,
    config: ConfigOpt = None,
) -> None:
    """What the traffic on the usage topic cost with routing, against all of it on the reference model."""
    from router.cost import report_from_topic

    s = _settings(config or ctx.obj)
    try:
        report = report_from_topic(s, reference, timeout_s)
    except (KeyError, TimeoutError) as exc:
        typer.echo(f"fleet router cost: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(report.text())


@app.command()
def worker(
    model: Annotated[str, typer.Option("--model", "-m", help="configured model name")], config: ConfigOpt = None
) -> None:
    """Run a worker for one model (group llm-worker-<model> on llm.requests.<model>)."""
    from fleet.runtime import run_service
    from worker.main import run_worker

    s = _settings(config)
    if model not in s.model_names:
        typer.echo(f"no model {model!r} configured; have {s.model_names}", err=True)
        raise typer.Exit(2)
    run_service(lambda stop: run_worker(s, model, stop))


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="the prompt")],
    model: Annotated[str, typer.Option(help="model name or 'auto'")] = "auto",
    max_tokens: Annotated[int, typer.Option()] = 64,
    temperature: Annotated[float, typer.Option()] = 0.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    seed: Annotated[int | None, typer.Option()] = None,
    chat: Annotated[
        bool, typer.Option("--chat/--raw", help="a chat turn (the model's chat template) or a raw completion")
    ] = True,
    timeout_s: Annotated[float, typer.Option()] = 60.0,
    config: ConfigOpt = None,
) -> None:
    """Send one request through Kafka and stream the reply to the terminal."""
    from contracts.errors import FleetError
    from contracts.messages import Chunk, Done
    from fleet.client import FleetClient

    s = _settings(config)

    async def main() -> int:
        async with FleetClient(s) as client:
            kw = {"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt}
            t0 = time.perf_counter()
            try:
                async for ev in client.stream(
                    model=model,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    top_p=top_p,
                    seed=seed,
                    timeout_s=timeout_s,
                    **kw,
                ):
                    if isinstance(ev, Chunk):
                        sys.stdout.write(ev.text)
                        sys.stdout.flush()
                    elif isinstance(ev, Done):
                        sys.stdout.write("\n")
                        typer.echo(
                            f"[{ev.model}] finish={ev.finish_reason.value} tokens={ev.usage.completion_tokens} "
                            f"ttft={ev.timings.ttft_ms:.1f}ms tpot={ev.timings.tpot_ms:.1f}ms "
                            f"total={(time.perf_counter() - t0) * 1000:.0f}ms",
                            err=True,
                        )
                    else:
                        typer.echo("\n[generation restarted]", err=True)
            except FleetError as exc:
                typer.echo(f"\nerror: {exc}", err=True)
                return 1
        return 0

    raise typer.Exit(asyncio.run(main()))


@app.command()
def health(
    file: Annotated[str, typer.Option("--file", help="the process's health_file")],
    max_age_s: Annotated[float, typer.Option(help="older than this is dead")] = 30.0,
    ready: Annotated[bool, typer.Option("--ready", help="also require readiness")] = False,
) -> None:
    """Exit 0 when a router or worker is alive (and ready): for Kubernetes exec probes."""
    from fleet.health import check

    ok, why = check(file, max_age_s=max_age_s, need_ready=ready)
    typer.echo(why, err=not ok)
    raise typer.Exit(0 if ok else 1)


@contracts_app.command("schema")
def contracts_schema() -> None:
    """Print JSON Schema of every message the fleet reads or writes."""
    from contracts.schema import json_schemas

    typer.echo(json.dumps(json_schemas(), indent=2))


@models_app.command("build")
def models_build(
    seed: Annotated[int, typer.Option()] = 0,
    force: Annotated[bool, typer.Option(help="rebuild even if present")] = False,
    config: ConfigOpt = None,
) -> None:
    """Train the demo target ('large') and draft ('small') models into the cache directory."""
    from fleet.demo_models import ensure_demo_models

    s = _settings(config)
    built = ensure_demo_models(s.cache_path, seed=seed, progress=True, force=force)
    typer.echo(f"large: {built.large}\nsmall: {built.small}")


@models_app.command("prepare")
def models_prepare(config: ConfigOpt = None) -> None:
    """Convert the configured GGUF checkpoints (and build the demo pair, if configured) into the cache, as
    `fleet up` does before it starts anything; Ctrl-C stops it and leaves nothing half-written."""
    from fleet.preparation import PreparationFailed, model_specs, prepare_models
    from fleet.runtime import run_service
    from fleet.settings import EngineKind

    s = _settings(config)
    outcome: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        try:
            ok = await prepare_models(s.models, s.cache_path, stop, say=lambda m: typer.echo(f"models: {m}", err=True))
            outcome.append(0 if ok else 130)
        except (PreparationFailed, FileNotFoundError, ValueError) as exc:
            typer.echo(f"fleet: {exc}", err=True)
            outcome.append(1)

    run_service(main)
    if outcome == [0]:
        from fleet.model_paths import resolve_model_path

        for spec in model_specs(m for m in s.models if m.engine is EngineKind.CONTINUOUS):
            typer.echo(f"{spec}: {resolve_model_path(spec, s.cache_path)}")
    raise typer.Exit(outcome[0] if outcome else 130)


@tenants_app.command("add")
def tenants_add(
    name: Annotated[str, typer.Argument(help="the tenant's name (also its intake topic's suffix)")],
) -> None:
    """Mint an API key for a new tenant: the key is printed once (to stderr), the TOML to add to the
    fleet's config (with the key's salted hash, never the key) to stdout. To rotate a key, add the new
    hash to the tenant's `api_key_hashes` and remove the old one once callers have switched."""
    from fleet.settings import toml_string
    from fleet.tenants import mint_key

    if not TENANT_NAME.fullmatch(name):  # the rule the settings apply: no '.' or '_' (no prefix covers another's)
        typer.echo(f"fleet: tenant name {name!r} must be 1-100 characters of letters, digits and '-'", err=True)
        raise typer.Exit(2)
    key, h = mint_key()
    typer.echo(f"API key for tenant {name!r} (shown once; send it in header fleet-api-key):\n{key}\n", err=True)
    typer.echo(f"[[tenants]]\nname = {toml_string(name)}\napi_key_hashes = [{toml_string(str(h))}]")


COMMANDS_GROUP = "fleet.commands"  # entry points: name -> a typer app mounted as `fleet NAME`


def _mount_plugins() -> None:
    """Command groups that packages above this one register (`fleet bench` comes from `benchmarks`):
    found through entry points, so the CLI never imports a higher layer."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=COMMANDS_GROUP):
        app.add_typer(ep.load(), name=ep.name)


# exit codes (docs/operations.md#exit-codes): 2 a configuration or usage error, 3 the infrastructure (a broker that
# does not answer, a busy port, a model that cannot be found or loaded), 130 interrupted
EXIT_INFRASTRUCTURE = 3


def main() -> None:
    """`fleet ...`; an infrastructure failure is one line on stderr and exit 3 (`--debug` shows the traceback)."""
    from aiokafka.errors import KafkaError

    from contracts.errors import FleetError

    _mount_plugins()
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except (KafkaError, OSError, FleetError, TimeoutError) as exc:
        if debug:
            raise
        why = str(exc) or type(exc).__name__
        typer.echo(f"fleet: {type(exc).__name__}: {why} (run with --debug for the traceback)", err=True)
        raise SystemExit(EXIT_INFRASTRUCTURE) from None


if __name__ == "__main__":
    main()
