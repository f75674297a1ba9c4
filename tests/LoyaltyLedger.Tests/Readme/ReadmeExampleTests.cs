using System.Text.Json;
using LoyaltyLedger.Server.Cli;
using LoyaltyLedger.Server.Demo;
using LoyaltyLedger.Tests.Infrastructure;
using Xunit.Abstractions;

namespace LoyaltyLedger.Tests.Readme;

/// <summary>
/// README.md runs as written: every command of its <c>sh</c> blocks, in order, against a fresh demo
/// (<c>serve --demo</c>: the demo seeded on this class's database with the credentials the README
/// uses, served in process on the test clock, 2025-03-01T12:00:00Z), and every answer is what the
/// README says it is (<see cref="ReadmeExamples"/> reads the <c># -&gt;</c> lines and answer blocks). A
/// curl is always run; any other command is run in process (the executable's commands) or excluded
/// below with its reason.
/// </summary>
public abstract class ReadmeExampleTests(DatabaseFixture db, ITestOutputHelper output)
{
    /// <summary>Commands (by how they start) that the test does not run, and why.</summary>
    private static readonly Dictionary<string, string> Excluded = new()
    {
        ["dotnet run --project src/LoyaltyLedger -- serve"] =
            "starts a server: this test is that server (the demo on the test's database, served in process); "
            + "serving on PostgreSQL is the PostgreSQL half of the suite",
        ["scripts/test.sh"] = "runs this suite",
        ["scripts/fault-test.sh"] = "the fault test, which scripts/test.sh runs after the suite",
        ["scripts/cluster.sh"] = "starts two PostgreSQL servers, two ledger servers and HAProxy; scripts/cluster-test.sh, which scripts/test.sh runs, starts and stops one",
        ["scripts/cluster-test.sh"] = "the cluster test, which scripts/test.sh runs after the suite",
        ["scripts/lint-openapi.sh"] = "the OpenAPI linter, which scripts/test.sh runs after the suite",
        ["scripts/generate-client.sh"] = "rewrites the committed client; GeneratedClientTests checks that it is what the generator makes",
    };

    /// <summary>Fields whose value a run cannot reproduce: only their presence is checked.</summary>
    private static readonly Dictionary<string, string> Volatile = new()
    {
        ["serialId"] = "a voucher bought gets 80 random bits (the README shows one such serial; the demo's own voucher has a fixed one)",
    };

    private const string DocumentedServer = "http://127.0.0.1:5080";
    private const string CliPrefix = "dotnet run --project src/LoyaltyLedger --";

    [Fact]
    public async Task every_readme_example_runs_in_order_on_a_fresh_demo_and_answers_what_the_readme_says()
    {
        var readme = ReadmeExamples.Parse(await File.ReadAllTextAsync(ReadmeExamples.FindReadme()));
        await DemoData.EnsureAsync(db.Database, "demo", "demo-secret", CancellationToken.None);
        var http = db.Host.Client();
        var volatileFields = Volatile.Keys.ToHashSet();

        var failures = new List<string>();
        var excludedUsed = new HashSet<string>();
        var (curls, checks, cli) = (0, 0, 0);
        foreach (var (line, text) in readme.StrayCurls)
            failures.Add($"README line {line}: a curl outside an sh block is neither run nor excluded: {text}");

        foreach (var command in readme.Commands)
        {
            var joined = string.Join(' ', command.Words);
            if (command.Words[0] == "curl")
            {
                curls++;
                var request = CurlRequest.From(command.Words);
                if (!request.Url.AbsoluteUri.StartsWith(DocumentedServer + "/", StringComparison.Ordinal))
                {
                    failures.Add($"{command}\n  is not addressed to the demo's documented URL {DocumentedServer}");
                    continue;
                }
                using var message = request.ToRequest();
                using var response = await http.SendAsync(message);
                var body = await response.Content.ReadAsStringAsync();
                var status = (int)response.StatusCode;
                output.WriteLine($"line {command.Line}: {request.Method} {request.Url.PathAndQuery} -> {status}");
                foreach (var problem in Check(command.Expected, status, body, volatileFields, ref checks))
                    failures.Add($"{command}\n  {problem}\n  answered {status}: {(body.Length > 1500 ? body[..1500] + "..." : body)}");
                continue;
            }

            if (Excluded.Keys.FirstOrDefault(prefix => joined.StartsWith(prefix, StringComparison.Ordinal)) is { } excluded)
            {
                excludedUsed.Add(excluded);
                output.WriteLine($"line {command.Line}: not run ({Excluded[excluded]}): {joined}");
                continue;
            }
            if (joined.StartsWith(CliPrefix + " ", StringComparison.Ordinal))
            {
                cli++;
                string[] args = [.. command.Words.Skip(CliPrefix.Split(' ').Length), .. db.CommandLineArgs];
                var exit = await Commands.RunAsync(args);
                output.WriteLine($"line {command.Line}: {joined} -> exit {exit}");
                if (exit != 0) failures.Add($"{command}\n  exited {exit}");
                continue;
            }
            failures.Add($"{command}\n  is neither run by this test nor excluded with a reason");
        }

        foreach (var stale in Excluded.Keys.Except(excludedUsed))
            failures.Add($"the exclusion of '{stale}' matches no README command: remove it");
        output.WriteLine($"{curls} curl commands run, {checks} stated results checked, {cli} commands run in process");

        curls.ShouldBeGreaterThan(0, "the README has no curl example: the parser lost them");
        if (failures.Count > 0) Assert.Fail($"{failures.Count} README example(s) answer otherwise than it says:\n\n" + string.Join("\n\n", failures));
    }

    private static IEnumerable<string> Check(Expectation expected, int status, string body, IReadOnlySet<string> volatileFields, ref int checks)
    {
        var problems = new List<string>();
        checks++;
        if (expected.Status is { } wanted ? status != wanted : status is < 200 or > 299)
            problems.Add($"answered {status}, the README says {expected.Status?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "2xx"}");
        if (expected.Lines is { } lines)
        {
            checks++;
            if (LinesMismatch(lines, body) is { } mismatch) problems.Add(mismatch);
        }
        if (expected.Fragments.Count == 0) return problems;

        JsonElement root;
        try
        {
            root = JsonDocument.Parse(body).RootElement.Clone();
        }
        catch (JsonException)
        {
            problems.Add("the answer is not JSON");
            return problems;
        }
        foreach (var fragment in expected.Fragments)
        {
            checks++;
            if (fragment.WholeBody)
            {
                if (fragment.Pattern.Mismatch(root, "$", volatileFields) is { } mismatch) problems.Add(mismatch);
                continue;
            }
            var candidates = fragment.Name is { } name ? PropertiesNamed(root, "$", name).ToList() : Descendants(root, "$").ToList();
            if (candidates.Count == 0)
            {
                problems.Add($"no \"{fragment.Name}\" anywhere in the answer (the README states {fragment.Pattern.Source})");
                continue;
            }
            var mismatches = candidates.Select(c => fragment.Pattern.Mismatch(c.Value, c.Path, volatileFields)).ToList();
            if (mismatches.All(m => m is not null))
                problems.Add($"nothing in the answer fits {(fragment.Name is null ? "" : $"\"{fragment.Name}\": ")}{fragment.Pattern.Source}; first: {mismatches[0]}");
        }
        return problems;
    }

    /// <summary>
    /// A text answer (CSV: CRLF line ends) against the lines the README states, each exactly; a last
    /// stated line <c>...</c> lets more lines follow.
    /// </summary>
    internal static string? LinesMismatch(IReadOnlyList<string> stated, string body)
    {
        var answered = body.Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd('\n').Split('\n');
        var open = stated.Count > 0 && stated[^1] == "...";
        var wanted = open ? stated.Take(stated.Count - 1).ToList() : [.. stated];
        for (var i = 0; i < wanted.Count; i++)
        {
            if (i >= answered.Length) return $"the answer ends after {answered.Length} lines; the README states line {i + 1}: {wanted[i]}";
            if (answered[i] != wanted[i]) return $"line {i + 1} of the answer is\n    {answered[i]}\n  the README states\n    {wanted[i]}";
        }
        return !open && answered.Length > wanted.Count
            ? $"the answer has {answered.Length} lines, the README states {wanted.Count} (end the block with ... for more)"
            : null;
    }

    private static IEnumerable<(string Path, JsonElement Value)> Descendants(JsonElement e, string path)
    {
        yield return (path, e);
        if (e.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in e.EnumerateObject())
                foreach (var d in Descendants(p.Value, $"{path}.{p.Name}")) yield return d;
        }
        else if (e.ValueKind == JsonValueKind.Array)
        {
            var i = 0;
            foreach (var item in e.EnumerateArray())
                foreach (var d in Descendants(item, $"{path}[{i++}]")) yield return d;
        }
    }

    private static IEnumerable<(string Path, JsonElement Value)> PropertiesNamed(JsonElement root, string path, string name) =>
        Descendants(root, path).Where(d => d.Value.ValueKind == JsonValueKind.Object && d.Value.TryGetProperty(name, out _))
            .Select(d => ($"{d.Path}.{name}", d.Value.GetProperty(name)));
}

public sealed class ReadmeExampleTestsOnSqlite(SqliteDatabase db, ITestOutputHelper output) : ReadmeExampleTests(db, output), IClassFixture<SqliteDatabase>;

public sealed class ReadmeExampleTestsOnPostgres(PostgresDatabase db, ITestOutputHelper output) : ReadmeExampleTests(db, output), IClassFixture<PostgresDatabase>;
