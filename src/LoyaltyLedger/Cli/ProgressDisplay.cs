using System.Diagnostics;
using Spectre.Console;

namespace LoyaltyLedger.Server.Cli;

/// <summary>
/// Progress of a long command: on a terminal a Spectre.Console bar with the rate and the time left
/// (a spinner when the total is unknown); when the output is redirected (a log, CI), a plain line
/// every ten seconds and one at the end, so logs stay readable.
/// </summary>
public static class ProgressDisplay
{
    private static readonly TimeSpan PlainInterval = TimeSpan.FromSeconds(10);

    /// <summary>Runs <paramref name="work"/>, which gets a callback to report (units done of <paramref name="total"/> <paramref name="unit"/>, a note) as it goes, under <paramref name="title"/>.</summary>
    public static async Task<T> RunAsync<T>(string title, long? total, string unit, Func<Action<long, string>, Task<T>> work)
    {
        var clock = Stopwatch.StartNew();
        if (Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            var last = TimeSpan.Zero;
            var result = await work((done, note) =>
            {
                if (clock.Elapsed - last < PlainInterval) return;
                last = clock.Elapsed;
                Console.WriteLine($"{title}: {Describe(done, total, unit, clock.Elapsed)}{(note.Length > 0 ? ", " + note : "")}");
            });
            if (clock.Elapsed >= PlainInterval) Console.WriteLine($"{title}: done in {clock.Elapsed.TotalSeconds:N1} s");
            return result;
        }

        return await AnsiConsole.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask(Markup.Escape(title), maxValue: Math.Max(1, total ?? 1));
                task.IsIndeterminate = total is null;
                var result = await work((done, note) =>
                {
                    task.Value = Math.Min(done, task.MaxValue);
                    task.Description = Markup.Escape($"{title}: {Describe(done, total, unit, clock.Elapsed)}{(note.Length > 0 ? ", " + note : "")}");
                });
                task.Value = task.MaxValue;
                task.StopTask();
                return result;
            });
    }

    public static Task RunAsync(string title, long? total, string unit, Func<Action<long, string>, Task> work) =>
        RunAsync(title, total, unit, async progress => { await work(progress); return true; });

    private static string Describe(long done, long? total, string unit, TimeSpan elapsed)
    {
        var rate = done / Math.Max(0.001, elapsed.TotalSeconds);
        var text = total is { } all ? $"{done:N0}/{all:N0} {unit}, {rate:N0} {unit}/s" : $"{done:N0} {unit}, {rate:N0} {unit}/s";
        if (total is { } t && done > 0 && done < t) text += $", about {TimeSpan.FromSeconds((t - done) / Math.Max(0.001, rate)):hh\\:mm\\:ss} left";
        return text;
    }
}
