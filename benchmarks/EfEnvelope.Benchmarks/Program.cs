using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using EfEnvelope.Benchmarks;

// --provider-calls: count provider calls per mode, no timing.
// --allocations: which types each operation allocates (runtime allocation sampling).
// --interleaved [--rounds N]: issue 14's comparison, every approach once per round in rotating order, medians (default 11 rounds).
// --breakdown: Stopwatch and allocation breakdown of the pieces (for profiling without a profiler).
// --quick: in-process, monitoring strategy (one invocation per iteration, no pilot), 1 warm-up and 5 measured
//          iterations: the whole suite in under two minutes on two cores.
// Anything else goes to BenchmarkDotNet (--filter, --job, ...).
if (args.Contains("--provider-calls"))
{
    await ProviderCalls.PrintAsync();
    return;
}

if (args.Contains("--allocations"))
{
    AllocationProfile.Print();
    return;
}

if (args.Contains("--interleaved"))
{
    var rounds = args.SkipWhile(a => a != "--rounds").Skip(1).Select(int.Parse).FirstOrDefault(11);
    Interleaved.Print(rounds);
    return;
}

if (args.Contains("--breakdown"))
{
    Breakdown.Print();
    return;
}

var quick = args.Contains("--quick");
var config = DefaultConfig.Instance.AddDiagnoser(MemoryDiagnoser.Default);
if (quick)
{
    config = config.AddJob(Job.Default
        .WithToolchain(InProcessEmitToolchain.Instance)
        .WithStrategy(RunStrategy.Monitoring)
        .WithLaunchCount(1)
        .WithWarmupCount(1)
        .WithIterationCount(5)
        .WithId("Quick"));
}

BenchmarkSwitcher.FromAssembly(typeof(ProviderCalls).Assembly).Run(args.Where(a => a != "--quick").ToArray(), config);
