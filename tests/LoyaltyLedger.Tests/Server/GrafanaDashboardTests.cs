using System.Data.Common;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using LoyaltyLedger.Tests.Storage;
using LoyaltyLedger.Tests.Webhooks;
using Npgsql;

namespace LoyaltyLedger.Tests.Server;

/// <summary>
/// docs/operations/grafana-dashboard.json stays true to the server: every metric its panels query is
/// one that /metrics exports once the server has done what the metric counts, and every label they
/// group or filter by is one its series carry. A panel that names a metric nobody exports, or groups
/// by a label no series has, draws an empty or one-line graph, which looks the same as a quiet one
/// until the day it is needed.
/// </summary>
[Collection(MetricsCollection.Name)]
public abstract partial class GrafanaDashboardTests(DatabaseFixture db)
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task every_metric_and_label_a_dashboard_panel_queries_is_exported_by_a_server_that_has_done_what_it_counts()
    {
        var queries = DashboardQueries();
        // Each query names at least one metric, so the check below cannot pass on an extraction that found none.
        foreach (var query in queries) query.Metrics.ShouldNotBeEmpty($"{query.Panel}: no metric name found in {query.Expr}");
        // And the labels are found: the older panels group by kind, outcome, http_route..., the key cache's filters on hit.
        queries.SelectMany(q => q.Labels).ShouldNotBeEmpty("no grouping or matched label found in the dashboard's queries");

        // Most metrics exist only once something was counted in them (a counter's first Add), so the
        // server does a little of everything the panels show. The instruments are static, so what the
        // other servers and database handles below count while this server runs shows on its /metrics too.
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync();
        var customer = await t.NewCustomerAsync();
        var bill = new { customerId = customer, billNumber = "DASH-1", amount = 10m, storeCode = shop.StoreCode };
        (await t.PostAsync("/v1/transactions", bill, "dashboard-1")).Dispose();
        (await t.PostAsync("/v1/transactions", bill, "dashboard-1")).Dispose();
        (await t.PostAsync("/v1/redemptions", new { customerId = customer, points = "1000" })).Dispose();
        // An expiry run counts its wallets, conversions and points even when nothing was due.
        await t.PostOkAsync("/v1/lifecycle/expire", new { });

        await using var limited = await TestServerHost.StartAsync(db.OpenSecondInstance(), new Dictionary<string, string?>
        {
            ["Ledger:RateLimit:PermitsPerSecond"] = "1",
            ["Ledger:RateLimit:Burst"] = "1",
        });
        await RefuseOverTheRateLimitAsync(await limited.NewTenantAsync());

        await using var receiver = await WebhookReceiver.StartAsync();
        await using var delivering = await WebhookHarness.StartAsync(db);
        var subscriber = await delivering.NewTenantAsync();
        var (webhook, _) = await subscriber.NewWebhookAsync(receiver.Url());
        await subscriber.PostOkAsync($"/v1/webhooks/{webhook}/test", new { });

        await using var oneWriter = db.OpenSecondInstance();
        if (db.Provider == DatabaseProvider.Postgres)
        {
            oneWriter.UseWriteLanes(1, maxBatch: 16);
            oneWriter.UseReadSlots(1);
            await WaitForAReadSlotAsync(oneWriter);
            // A read through the read pipeline (ledger_postgres_read_pipeline_batch).
            oneWriter.UseReadPipeline(1, maxBatch: 16);
            (await oneWriter.PipelinedQueryAsync<long>("SELECT @n", new { n = 1L }, CancellationToken.None).WaitAsync(Bound)).ShouldBe([1L]);
            await DeferAWriteBehindALockHeldElsewhereAsync(oneWriter, t.OrgId);
            await RunABatchSideBySideAsync(oneWriter);
        }
        else await RefuseAWriteAfterAnotherInItsBatchAsync(oneWriter);

        // Some are counted after the answer: a checkpoint runs beside the writer after its commit,
        // a webhook is delivered by the dispatcher's next poll.
        var anonymous = db.Host.Client();
        List<string> missing = [], unlabelled = [];
        for (var waited = 0; waited < 100; waited++)
        {
            var exported = ExportedSeries(await anonymous.GetStringAsync("/metrics"));
            missing = [.. queries.SelectMany(q => q.Metrics.Where(m => !exported.ContainsKey(m) && !ExportedOnTheOtherDatabaseOnly(m))
                .Select(m => $"{m}, in {q.Panel}"))];
            // A label is looked for on the metrics exported here: one not exported is missing above, or the other class's.
            unlabelled = [.. queries.SelectMany(q => q.Labels.Where(l => exported.TryGetValue(l.Metric, out var labels) && !labels.Contains(l.Label))
                .Select(l => $"{l.Label} on {l.Metric}, in {q.Panel}"))];
            if (missing.Count == 0 && unlabelled.Count == 0) break;
            await Task.Delay(100);
        }
        queries.ShouldSatisfyAllConditions(
            () => missing.ShouldBeEmpty($"the dashboard queries metrics that /metrics does not export on {db.Provider}"),
            () => unlabelled.ShouldBeEmpty($"the dashboard groups or filters by labels that the series /metrics exports do not carry on {db.Provider}"));
    }

    /// <summary>
    /// Whether <paramref name="name"/> is exported only by a server on the other database: SQLite's
    /// writer, checkpoints and log, or PostgreSQL's write lanes, read slots, read pipeline and Npgsql's
    /// <c>db_client_*</c> (Microsoft.Data.Sqlite has no meter). The other class of this suite checks them.
    /// </summary>
    private bool ExportedOnTheOtherDatabaseOnly(string name) => db.Provider == DatabaseProvider.Sqlite
        ? name.StartsWith("ledger_postgres_", StringComparison.Ordinal) || name.StartsWith("db_client_", StringComparison.Ordinal)
        : name.StartsWith("ledger_sqlite_", StringComparison.Ordinal);

    private static async Task RefuseOverTheRateLimitAsync(Tenant t)
    {
        for (var i = 0; i < 5; i++)
        {
            using var response = await t.Http.GetAsync("/v1/programs");
            if (response.StatusCode == HttpStatusCode.TooManyRequests) return;
        }
        throw new Xunit.Sdk.XunitException("a key with a burst of 1 was never refused with 429");
    }

    /// <summary>A read waits for the only read slot while another read holds it (PostgreSQL's ledger_postgres_read_wait_seconds_total).</summary>
    private static async Task WaitForAReadSlotAsync(LedgerDatabase database)
    {
        var (release, holder) = await ReadSlotsTests.HoldTheSlotAsync(database);
        var queued = database.ReadAsync(c => c.ExecuteScalarAsync<int>("SELECT 1"), CancellationToken.None);
        release.SetResult();
        await holder.WaitAsync(Bound);
        (await queued.WaitAsync(Bound)).ShouldBe(1);
    }

    /// <summary>
    /// SQLite's writer runs a write and then one that is refused in one batch without savepoints: the
    /// batch is rolled back and run again with a savepoint for each (ledger_sqlite_writer_reruns_total).
    /// </summary>
    private static async Task RefuseAWriteAfterAnotherInItsBatchAsync(LedgerDatabase database)
    {
        var (written, refused) = await BatchBehindAHeldWriteAsync(database,
            (_, _) => Task.FromException<int>(LedgerException.Invalid("refused, as an overdrawn redemption is")));
        (await written.WaitAsync(Bound)).ShouldBe(1);
        await Should.ThrowAsync<LedgerException>(refused.WaitAsync(Bound));
    }

    /// <summary>
    /// A PostgreSQL lane runs a write and then one that would wait for a row another session holds:
    /// that one goes first in the lane's next batch (ledger_postgres_writer_deferred_total) and its
    /// batch runs again without it (ledger_postgres_writer_reruns_total).
    /// </summary>
    private async Task DeferAWriteBehindALockHeldElsewhereAsync(LedgerDatabase database, long orgId)
    {
        const string lockTheOrganization = "SELECT 1 FROM organizations WHERE org_id = @orgId FOR UPDATE";
        await using var elsewhere = new NpgsqlConnection(((PostgresDatabase)db).ConnectionString);
        await elsewhere.OpenAsync();
        await using var holding = await elsewhere.BeginTransactionAsync();
        await elsewhere.ExecuteAsync(lockTheOrganization, new { orgId }, holding);

        var (written, deferred) = await BatchBehindAHeldWriteAsync(database,
            (c, tx) => c.ExecuteScalarAsync<int>(lockTheOrganization, new { orgId }, tx));
        (await written.WaitAsync(Bound)).ShouldBe(1);
        await holding.RollbackAsync();
        (await deferred.WaitAsync(Bound)).ShouldBe(1);
    }

    /// <summary>
    /// Two writes made through postings only, queued behind a held one: they share the next batch
    /// and run side by side (<c>ledger_postgres_writer_side_by_side_total</c>, <c>ledger_postgres_writer_rounds_total</c>).
    /// </summary>
    private static async Task RunABatchSideBySideAsync(LedgerDatabase database)
    {
        var before = database.SideBySide!.Value.Ran;
        Func<DbConnection, DbTransaction, Task<long>> Echo(long n) => async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, database.Dialect);
            var echo = batch.Query("SELECT @n", new { n });
            return (await batch.RunAsync()).SingleLong(echo);
        };
        var answers = await GroupCommitTests.RunBehindABlockerAsync(
            unit => database.WriteAndLocateAsync(unit, CancellationToken.None, postingsOnly: true)
                .ContinueWith(t => t.GetAwaiter().GetResult().Result, TaskScheduler.Default),
            (_, _) => Task.CompletedTask, [Echo(1), Echo(2)]);
        (await Task.WhenAll(answers).WaitAsync(Bound)).ShouldBe([1L, 2L]);
        database.SideBySide!.Value.Ran.ShouldBe(before + 1);
    }

    /// <summary>
    /// Queues a write that answers 1 and then <paramref name="second"/> while the only writer of
    /// <paramref name="database"/> is held in another write, so that the two share the next batch.
    /// </summary>
    private static async Task<(Task<int> First, Task<int> Second)> BatchBehindAHeldWriteAsync(LedgerDatabase database,
        Func<DbConnection, DbTransaction, Task<int>> second)
    {
        var answers = await GroupCommitTests.RunBehindABlockerAsync(unit => database.WriteBatchedAsync(unit, CancellationToken.None),
            (_, _) => Task.CompletedTask, [(_, _) => Task.FromResult(1), second]);
        return (answers[0], answers[1]);
    }

    [Fact]
    public void every_panel_has_an_id_of_its_own()
    {
        // Grafana keys a panel's links, its place in a saved view and its alerts by id: two panels
        // with one id show one panel's state in the other.
        using var dashboard = JsonDocument.Parse(File.ReadAllText(DashboardPath()));
        static IEnumerable<JsonElement> All(JsonElement panels) =>
            panels.EnumerateArray().SelectMany(p => p.TryGetProperty("panels", out var nested) ? All(nested).Prepend(p) : [p]);
        var ids = All(dashboard.RootElement.GetProperty("panels")).Select(p => p.GetProperty("id").GetInt32()).ToList();
        ids.ShouldNotBeEmpty();
        ids.GroupBy(id => id).Where(g => g.Count() > 1).Select(g => g.Key).ShouldBeEmpty("panel ids used more than once");
    }

    /// <summary>One query of the dashboard, where it is, the metrics it names and the labels it needs on their series.</summary>
    private sealed record DashboardQuery(string Panel, string Expr, IReadOnlyList<string> Metrics, IReadOnlyList<(string Metric, string Label)> Labels);

    /// <summary>Every panel's queries (rows' panels included) and the template variables' queries.</summary>
    private static List<DashboardQuery> DashboardQueries()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(DashboardPath()));
        var queries = new List<DashboardQuery>();
        void Panels(JsonElement panels)
        {
            foreach (var panel in panels.EnumerateArray())
            {
                var title = $"panel {panel.GetProperty("id").GetInt32()} \"{panel.GetProperty("title").GetString()}\"";
                if (panel.TryGetProperty("targets", out var targets))
                {
                    foreach (var target in targets.EnumerateArray())
                    {
                        var expr = target.GetProperty("expr").GetString()!;
                        var metrics = MetricNames(expr);
                        queries.Add(new DashboardQuery(title, expr, metrics, LabelsNeeded(expr, metrics)));
                    }
                }
                if (panel.TryGetProperty("panels", out var nested)) Panels(nested);
            }
        }
        Panels(dashboard.RootElement.GetProperty("panels"));
        foreach (var variable in dashboard.RootElement.GetProperty("templating").GetProperty("list").EnumerateArray())
        {
            if (variable.GetProperty("type").GetString() != "query") continue;
            var query = variable.GetProperty("query").GetString()!;
            var name = $"variable ${variable.GetProperty("name").GetString()}";
            // Grafana's label_values(series, label) or label_values(label): the label is no metric, and
            // the one-argument form names none and needs nothing of /metrics, so it is not checked.
            var labelValues = LabelValues().Match(query);
            if (!labelValues.Success)
            {
                var metrics = MetricNames(query);
                queries.Add(new DashboardQuery(name, query, metrics, LabelsNeeded(query, metrics)));
            }
            else if (labelValues.Groups["series"].Success)
            {
                var series = labelValues.Groups["series"].Value;
                var metrics = MetricNames(series);
                var label = labelValues.Groups["label"].Value;
                queries.Add(new DashboardQuery(name, query, metrics,
                    [.. LabelsNeeded(series, metrics).Concat(metrics.Select(m => (Metric: m, Label: label))).Where(l => !AddedOutsideTheMeter.Contains(l.Label)).Distinct()]));
            }
        }
        return queries;
    }

    /// <summary>
    /// The metric names in a PromQL expression, as written (a histogram's <c>_bucket</c>,
    /// <c>_sum</c> or <c>_count</c> series included): what is left once label values, label
    /// matchers, ranges and grouping labels are taken out, less functions and keywords.
    /// </summary>
    private static List<string> MetricNames(string expr)
    {
        var bare = Strings().Replace(expr, "");
        bare = Matchers().Replace(bare, "");
        bare = Ranges().Replace(bare, "");
        bare = Grouping().Replace(bare, "");
        return Identifiers().Matches(bare).Select(m => m.Value).Where(n => !Keywords.Contains(n)).Distinct().ToList();
    }

    private static readonly HashSet<string> Keywords =
        ["and", "or", "unless", "bool", "offset", "group_left", "group_right", "atan2", "inf", "nan"];

    /// <summary>
    /// The labels a PromQL expression needs on its metrics' series: those its matchers name, on the
    /// metric of their selector, and those it groups by, on each of its metrics (the two sides of a
    /// division, or any binary operation, match on their labels, so a grouping label one side lacks
    /// empties the result as surely as one both lack). Less those /metrics cannot be asked about: the
    /// labels the scrape adds (<c>job</c>, <c>instance</c>), a histogram's <c>le</c>, which its
    /// exporter writes on every bucket, and <c>__name__</c>, the metric's name.
    /// </summary>
    private static List<(string Metric, string Label)> LabelsNeeded(string expr, IReadOnlyList<string> metrics)
    {
        var bare = Strings().Replace(expr, "");
        var matched = Selectors().Matches(bare).SelectMany(s => MatcherLabels().Matches(s.Groups["matchers"].Value)
            .Select(l => (Metric: s.Groups["metric"].Value, Label: l.Groups["label"].Value)));
        var grouped = GroupingBy().Matches(bare)
            .SelectMany(g => g.Groups["labels"].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            .SelectMany(label => metrics.Select(m => (Metric: m, Label: label)));
        return [.. matched.Concat(grouped).Where(l => !AddedOutsideTheMeter.Contains(l.Label)).Distinct()];
    }

    private static readonly HashSet<string> AddedOutsideTheMeter = ["job", "instance", "le", "__name__"];

    /// <summary>
    /// The series of a Prometheus text exposition (<c>name{label="value",...} value</c> lines, comments
    /// left out), each name with the label names its lines carry. A line that is no series is skipped.
    /// </summary>
    private static Dictionary<string, HashSet<string>> ExportedSeries(string exposition)
    {
        var series = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var line in exposition.Split('\n'))
        {
            var match = SeriesLine().Match(line);
            if (!match.Success) continue;
            var name = match.Groups["name"].Value;
            if (!series.TryGetValue(name, out var labels)) series[name] = labels = new HashSet<string>(StringComparer.Ordinal);
            foreach (Capture label in match.Groups["label"].Captures) labels.Add(label.Value);
        }
        return series;
    }

    private static string DashboardPath() => RepositoryFiles.PathOf("docs", "operations", "grafana-dashboard.json");

    [GeneratedRegex("""
        "(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`
        """)]
    private static partial Regex Strings();

    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex Matchers();

    [GeneratedRegex(@"\[[^\]]*\]")]
    private static partial Regex Ranges();

    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")]
    private static partial Regex Grouping();

    /// <summary>An aggregation's <c>by (labels)</c>, before or after its argument.</summary>
    [GeneratedRegex(@"\bby\s*\((?<labels>[^)]*)\)")]
    private static partial Regex GroupingBy();

    /// <summary>A metric with its label matchers, in an expression whose strings were taken out.</summary>
    [GeneratedRegex(@"(?<![\w:$.])(?<metric>[a-zA-Z_:][\w:]*)\s*\{(?<matchers>[^}]*)\}")]
    private static partial Regex Selectors();

    [GeneratedRegex(@"(?<label>[a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")]
    private static partial Regex MatcherLabels();

    /// <summary>An exposition line's series name and the names of its labels (their values may hold any escaped character).</summary>
    [GeneratedRegex("""^(?<name>[a-zA-Z_:][\w:]*)(?:\{\s*(?:(?<label>[a-zA-Z_]\w*)\s*=\s*"(?:[^"\\]|\\.)*"\s*,?\s*)*\})?[ \t]""")]
    private static partial Regex SeriesLine();

    /// <summary>A name not inside another (nor a Grafana variable's), and not a function's (followed by its parenthesis).</summary>
    [GeneratedRegex(@"(?<![\w:$.])(?>[a-zA-Z_:][\w:]*)(?!\s*\()")]
    private static partial Regex Identifiers();

    /// <summary>Grafana's <c>label_values(series, label)</c>, or <c>label_values(label)</c> over every series.</summary>
    [GeneratedRegex(@"^\s*label_values\(\s*(?:(?<series>.+),\s*)?(?<label>[a-zA-Z_]\w*)\s*\)\s*$")]
    private static partial Regex LabelValues();
}

public sealed class GrafanaDashboardTestsOnSqlite(SqliteDatabase db) : GrafanaDashboardTests(db), IClassFixture<SqliteDatabase>;

public sealed class GrafanaDashboardTestsOnPostgres(PostgresDatabase db) : GrafanaDashboardTests(db), IClassFixture<PostgresDatabase>;
