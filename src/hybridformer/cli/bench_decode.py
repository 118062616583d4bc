"""``hybridformer bench decode``: decoding speed of a checkpoint per engine and weight format, beside peers."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import split_list


def bench_decode(
    checkpoint: Path = typer.Argument(..., help="Float checkpoint directory (a decoder_lm or encoder_decoder)."),
    out: Path = typer.Option(..., "--out", help="Directory for decode.json and decode.md."),
    engines: str = typer.Option("torch", "--engines", help="Our engines, comma-separated: torch, ct2."),
    formats: str = typer.Option("fp32,bf16,int8,int4", "--formats", help="Weight formats of the torch engine."),
    peers: str = typer.Option("transformers,ct2,llama.cpp", "--peers", help="Peers on the same weights "
                              "(\"\" = none); a peer whose library is missing is reported as skipped."),
    prompts: int = typer.Option(8, "--prompts", help="Prompts in the batch (batch-1 runs the first)."),
    prompt_len: int = typer.Option(32, "--prompt-len", help="Tokens per prompt."),
    new_tokens: int = typer.Option(64, "--new-tokens", help="New tokens per prompt (EOS suppressed)."),
    beam: int = typer.Option(5, "--beam", help="Beam size of the beam-search measurement (0 = skip it)."),
    rounds: int = typer.Option(3, "--rounds", help="Interleaved rounds (the median is reported)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads of every contender."),
    text: Path = typer.Option(None, "--text", help="Take the prompts from this text (default: random token ids)."),
    calibrate: Path = typer.Option(None, "--calibrate", help="Calibrate int8 on this text first (SmoothQuant, as "
                                   "`quantize --calibrate`); LLMs need it."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Peak memory of each contender in a fresh "
                                "process (costs one model load each)."),
    compile_: bool = typer.Option(False, "--compile", help="Also run each torch format with its decoding step "
                                  "compiled (torch.compile; its compile time is reported)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report at --out."),
) -> None:
    """Greedy tok/s at batch 1 and full batch, beam tok/s, prefill tok/s and peak memory, contenders
    interleaved round by round in one run; fp32 paths must give identical greedy tokens.

    Examples:
      hybridformer bench decode smollm2 --formats fp32,int8 --calibrate notes.txt --peers ct2 --out runs/decode
      hybridformer bench decode runs/m30k-conformer/checkpoints/best --peers "" --out runs/decode-conformer
      hybridformer bench decode smollm2 --formats fp32 --compile --peers ct2 --no-memory --out runs/decode-compiled
    """
    from ..bench.decode import markdown, run_decode_bench, write_decode_report
    from ..outputs import prepare_output_dir

    prepare_output_dir(out, overwrite=overwrite, inputs=[checkpoint, *([calibrate] if calibrate else [])])
    report = run_decode_bench(
        checkpoint, engines=split_list(engines), formats=split_list(formats), peers=split_list(peers),
        prompts=prompts, prompt_len=prompt_len, new_tokens=new_tokens, beam=beam, rounds=rounds, threads=threads,
        text=text, calibrate=calibrate, memory=memory, compiled=compile_,
        progress=lambda line: typer.echo(line, err=True))
    write_decode_report(report, out)
    typer.echo(markdown(report))
    if not report.fp32_identical:
        typer.echo("warning: an fp32 path gave tokens different from the torch fp32 engine", err=True)
    typer.echo(f"wrote {out / 'decode.json'} and {out / 'decode.md'}")
