using System.Globalization;
using LoyaltyLedger.Audit;
using LoyaltyLedger.Exports;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Seeding;
using LoyaltyLedger.Server.Demo;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Spectre.Console;

namespace LoyaltyLedger.Server.Cli;

/// <summary>
/// The executable's commands. Kept to plain argument parsing: a handful of verbs and options.
/// </summary>
public static class Commands
{
    private const string Usage = """
        LoyaltyLedger: a loyalty points ledger service.

        Usage:
          LoyaltyLedger serve [--demo] [--urls URL] [--data-dir DIR] [--postgres CONNSTRING]
          LoyaltyLedger org create --name NAME        creates an organization and its first admin key
          LoyaltyLedger org list
          LoyaltyLedger key create --org ID [--role read|write|admin] [--name TEXT]
          LoyaltyLedger key list --org ID
          LoyaltyLedger key rotate --org ID --key KEYID    new secret; the old one stops working at once
          LoyaltyLedger key revoke --org ID --key KEYID    refused from the next request on
          LoyaltyLedger migrate                       applies schema migrations and exits
          LoyaltyLedger seed [--customers N] [--events N] [--org-name NAME] [--skew S] [--random-seed N]
                             [--key-id ID --key-secret SECRET]
                                                      bulk-loads a synthetic organization (default 1,000,000
                                                      customers, 20,000,000 events, Zipf skew 1.0); no other
                                                      writer may use the database meanwhile
          LoyaltyLedger verify [--org ID]             audits every wallet, lot and debit; exits 1 on any violation
          LoyaltyLedger expire [--as-of INSTANT] [--org ID]
                                                      converts due promised points, expires due points, sends expiry notices
                                                      (as of INSTANT, e.g. 2025-01-01T00:00:00Z; default now),
                                                      for one organization or all; running it twice changes nothing
          LoyaltyLedger export --format csv|ndjson --out FILE [--org ID] [--from INSTANT] [--to INSTANT]
                               [--customer ID | --group ID] [--program ID] [--event-name NAME]
                                                      writes the organization's ledger lines to FILE, as the
                                                      /v1/exports/ledger.csv and .ndjson endpoints do; --org may be
                                                      left out when the database holds one organization

        Storage: SQLite file DIR/ledger.db (default ./data, or LEDGER_DATA_DIR), unless a PostgreSQL
        connection string is given by --postgres or the LEDGER_POSTGRES environment variable.
        Demo credentials: LEDGER_DEMO_KEY and LEDGER_DEMO_SECRET (default demo / demo-secret).
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        var parsed = ParsedArgs.Parse(args);
        if (parsed.Flag("help") || parsed.Flag("h")) return Help(0);
        try
        {
            return parsed.Verb switch
            {
                "serve" or "" => await ServeAsync(parsed),
                "org" when parsed.Noun == "create" => await CreateOrgAsync(parsed),
                "org" when parsed.Noun == "list" => await ListOrgsAsync(parsed),
                "key" when parsed.Noun == "create" => await CreateKeyAsync(parsed),
                "key" when parsed.Noun is "list" or "rotate" or "revoke" => await ManageKeyAsync(parsed),
                "migrate" => await MigrateAsync(parsed),
                "verify" => await VerifyAsync(parsed),
                "seed" => await SeedAsync(parsed),
                "expire" => await ExpireAsync(parsed),
                "export" => await ExportAsync(parsed),
                "help" or "--help" or "-h" => Help(0),
                _ => Help(2),
            };
        }
        catch (LedgerException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Code}: {ex.Message}");
            return 1;
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return 2;
        }
    }

    private static int Help(int code)
    {
        (code == 0 ? Console.Out : Console.Error).WriteLine(Usage);
        return code;
    }

    public static LedgerDatabase OpenDatabase(ParsedArgs args)
    {
        var postgres = args.Option("postgres") ?? Environment.GetEnvironmentVariable("LEDGER_POSTGRES");
        if (!string.IsNullOrWhiteSpace(postgres)) return LedgerDatabase.ForPostgres(postgres);
        var dataDir = args.Option("data-dir") ?? Environment.GetEnvironmentVariable("LEDGER_DATA_DIR") ?? "data";
        return LedgerDatabase.ForSqliteFile(Path.Combine(dataDir, "ledger.db"));
    }

    private static async Task<int> ServeAsync(ParsedArgs args)
    {
        await using var db = OpenDatabase(args);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        var urls = args.Option("urls") ?? Environment.GetEnvironmentVariable("ASPNETCORE_URLS") ?? "http://127.0.0.1:5080";
        var app = LedgerServer.Build(new LedgerServerOptions
        {
            Database = db,
            Args = ["--urls", urls],
            // The demo runs on one machine: its webhooks go to receivers on that machine (127.0.0.1).
            Configure = args.Flag("demo")
                ? builder => builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Ledger:Webhooks:AllowPrivateTargets"] = "true" })
                : null,
        });

        if (args.Flag("demo"))
        {
            var key = Environment.GetEnvironmentVariable("LEDGER_DEMO_KEY") ?? "demo";
            var secret = Environment.GetEnvironmentVariable("LEDGER_DEMO_SECRET") ?? "demo-secret";
            var demo = await DemoData.EnsureAsync(db, key, secret, CancellationToken.None);
            var baseUrl = urls.Split(';')[0].TrimEnd('/');
            Console.WriteLine($"""
                LoyaltyLedger demo on {db.Description}
                  organization: {demo.OrgId} ({DemoData.OrganizationName}){(demo.Seeded ? ", seeded now" : ", already seeded")}
                  URL:          {baseUrl}
                  credentials:  {key} / {secret}   (HTTP Basic)
                  reference:    {baseUrl}/docs   (OpenAPI document: {baseUrl}/openapi/v1.json)
                  console:      {baseUrl}/console   (sign in with the key and secret above)
                  try:          curl -u {key}:{secret} '{baseUrl}/v2/pointsLedger/getCustomerLedgerInfo?identifierName=id&identifierValue=64035151&source=INSTORE&limit=10'
                                curl -u {key}:{secret} '{baseUrl}/v1/customers/64035151/balances'
                """);
        }
        else
        {
            var baseUrl = urls.Split(';')[0].TrimEnd('/');
            Console.WriteLine($"LoyaltyLedger on {db.Description}, listening on {urls}; API reference at {baseUrl}/docs, support console at {baseUrl}/console");
        }
        await app.RunAsync();
        return 0;
    }

    private static async Task<int> MigrateAsync(ParsedArgs args)
    {
        await using var db = OpenDatabase(args);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        Console.WriteLine($"Schema up to date on {db.Description}.");
        return 0;
    }

    private static async Task<int> VerifyAsync(ParsedArgs args)
    {
        long? orgId = args.Option("org") is { } text
            ? long.TryParse(text, out var id) ? id : throw new ArgumentException("--org takes an organization id")
            : null;
        await using var db = OpenDatabase(args);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        var report = await LedgerVerifier.VerifyAsync(db, orgId, CancellationToken.None);
        Console.WriteLine($"verify {db.Description}{(orgId is null ? "" : $" organization {orgId}")}:");
        Console.WriteLine($"  organizations {report.Organizations}, wallets {report.Wallets}, events {report.Events}, entries {report.Entries}, lots {report.Lots}, idempotency keys {report.IdempotencyKeys}");
        foreach (var violation in report.Violations) Console.WriteLine($"  VIOLATION: {violation}");
        Console.WriteLine(report.Passed ? "  all invariants hold" : $"  {report.Violations.Count} violation(s)");
        return report.Passed ? 0 : 1;
    }

    private static async Task<int> ExpireAsync(ParsedArgs args)
    {
        var now = TimeProvider.System.GetUtcNow();
        var asOf = now;
        if (args.Option("as-of") is { } text && !IsoTime.TryParse(text, allowDate: false, out asOf))
            throw new ArgumentException($"--as-of must be {IsoTime.ExpectedDateTime}");
        long? orgId = null;
        if (args.Option("org") is { } org)
            orgId = long.TryParse(org, CultureInfo.InvariantCulture, out var id) ? id : throw new ArgumentException("--org takes an organization id");
        await using var db = OpenDatabase(args);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        var result = await LifecycleRun.RunAsync(db, orgId, asOf, now, "cli", CancellationToken.None);
        Console.WriteLine($"as of {IsoTime.Format(asOf)}: {result.Conversions} promised lots converted, {result.Expiries} wallets expired, {result.ExpiryNotices} expiry notices sent");
        foreach (var e in result.Events)
            Console.WriteLine($"  {e.EventName} event {e.EventId}: {string.Join(", ", e.Entries.Select(x => $"{x.EntryType} {x.Points} {x.Currency ?? "points"} ({x.Category})"))}");
        return 0;
    }

    private static async Task<int> SeedAsync(ParsedArgs args)
    {
        var options = new SeedOptions
        {
            OrganizationName = args.Option("org-name") ?? "seeded organization",
            Customers = LongOption(args, "customers") ?? 1_000_000,
            Events = LongOption(args, "events") ?? 20_000_000,
            Skew = args.Option("skew") is { } skew
                ? double.TryParse(skew, NumberStyles.Float, CultureInfo.InvariantCulture, out var s) ? s : throw new ArgumentException("--skew takes a number")
                : 1.0,
            RandomSeed = (int)(LongOption(args, "random-seed") ?? 7),
            KeyId = args.Option("key-id"),
            KeySecret = args.Option("key-secret"),
        };
        if ((options.KeyId is null) != (options.KeySecret is null)) throw new ArgumentException("--key-id and --key-secret go together");
        await using var db = OpenDatabase(args);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        Console.WriteLine($"seeding '{options.OrganizationName}' on {db.Description}: {options.Customers:N0} customers, {options.Events:N0} events");
        var interactive = !Console.IsOutputRedirected;
        var lastLine = TimeSpan.Zero;
        var result = await OrganizationSeeder.SeedAsync(db, options, p =>
        {
            // A redrawn bar on a terminal; a line every ten seconds in a log.
            if (!interactive && (p.Elapsed - lastLine).TotalSeconds < 10 && p.CustomersDone < p.Customers) return;
            lastLine = p.Elapsed;
            const int width = 30;
            var filled = (int)(width * p.CustomersDone / Math.Max(1, p.Customers));
            var line = $"[{new string('#', filled)}{new string('.', width - filled)}] {p.CustomersDone:N0}/{p.Customers:N0} customers, "
                + $"{p.Events:N0} events, {p.Entries:N0} entries, {p.EntriesPerSecond:N0} entries/s, {p.Elapsed.TotalSeconds:N0} s";
            if (interactive) Console.Write("\r" + line);
            else Console.WriteLine(line);
        }, CancellationToken.None);
        if (interactive) Console.WriteLine();
        Console.WriteLine($"organization {result.OrgId} '{options.OrganizationName}' seeded in {result.Elapsed.TotalSeconds:N1} s");
        Console.WriteLine($"  customers {result.Customers:N0}, events {result.Events:N0}, entries {result.Entries:N0}, lots {result.Lots:N0}, rows {result.Rows:N0}");
        Console.WriteLine($"  rate: {result.EntriesPerSecond:N0} entries/s, {result.Rows / Math.Max(0.001, result.Elapsed.TotalSeconds):N0} rows/s");
        Console.WriteLine($"  program {result.ProgramId}; heaviest customer {result.HeaviestCustomerId} ({result.HeaviestCustomerEvents:N0} events, account {result.HeaviestAccountNumber}); light customer {result.LightCustomerId} (account {result.LightAccountNumber})");
        Console.WriteLine($"admin key: {result.Key.KeyId}");
        Console.WriteLine($"secret:    {result.Key.Secret}   (shown once; only its hash is stored)");
        return 0;
    }

    private static async Task<int> ExportAsync(ParsedArgs args)
    {
        if (!LedgerExportFormats.TryParse(args.Option("format"), out var format)) throw new ArgumentException("export needs --format csv or --format ndjson");
        var output = args.Option("out") is { Length: > 0 } path ? Path.GetFullPath(path) : throw new ArgumentException("export needs --out FILE");
        var filter = new LedgerExportFilter
        {
            From = TimeOption(args, "from"),
            To = TimeOption(args, "to"),
            CustomerId = LongOption(args, "customer"),
            GroupId = LongOption(args, "group"),
            ProgramId = LongOption(args, "program"),
            EventName = args.Option("event-name"),
        };
        var orgOption = LongOption(args, "org");
        await using var db = OpenDatabase(args);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        var organizations = (await Tenants.ListOrganizationsAsync(db, CancellationToken.None)).ToList();
        var orgId = orgOption is { } id
            ? organizations.Any(o => o.OrgId == id) ? id : throw LedgerException.NotFound("organization", id)
            : organizations.Count == 1 ? organizations[0].OrgId
            : throw new ArgumentException($"the database holds {organizations.Count} organizations: name one with --org ID (see org list)");

        // Ctrl+C stops the query and leaves no file behind.
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            await using var export = await LedgerExport.OpenAsync(db, orgId, filter, cancel.Token);
            var total = await export.CountAsync(cancel.Token);
            var started = System.Diagnostics.Stopwatch.StartNew();
            // Written beside the target and moved over it at the end: a failed or interrupted export
            // leaves no half file under the name asked for.
            var partial = output + ".partial";
            long written;
            try
            {
                await using (var file = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous))
                {
                    written = await WithProgressAsync(total, started, progress => export.WriteAsync(file, format, progress, cancel.Token));
                }
                File.Move(partial, output, overwrite: true);
            }
            catch
            {
                if (File.Exists(partial)) File.Delete(partial);
                throw;
            }
            var seconds = Math.Max(0.001, started.Elapsed.TotalSeconds);
            Console.WriteLine($"exported {written:N0} ledger lines of organization {orgId} to {output} ({format.FileExtension()}) in {seconds:N1} s, {written / seconds:N0} lines/s");
            return 0;
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("export interrupted; no file written");
            return 130;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            await Console.Error.WriteLineAsync($"error: cannot write {output}: {ex.Message}");
            return 1;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>
    /// A progress bar on a terminal (Spectre.Console); a plain line every ten seconds when the output
    /// is redirected to a log or a pipe, where a redrawn bar would be noise.
    /// </summary>
    private static async Task<long> WithProgressAsync(long total, System.Diagnostics.Stopwatch started, Func<Action<long>, Task<long>> work)
    {
        string Line(long done) =>
            $"{done:N0}/{Math.Max(total, done):N0} lines, {done / Math.Max(0.001, started.Elapsed.TotalSeconds):N0} lines/s, {started.Elapsed.TotalSeconds:N0} s";
        if (Console.IsOutputRedirected)
        {
            var lastLine = TimeSpan.Zero;
            return await work(done =>
            {
                if (started.Elapsed - lastLine < TimeSpan.FromSeconds(10)) return;
                lastLine = started.Elapsed;
                Console.WriteLine(Line(done));
            });
        }
        return await AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask("exporting", maxValue: Math.Max(1, total));
                var written = await work(done =>
                {
                    task.MaxValue = Math.Max(task.MaxValue, done);
                    task.Value = done;
                    task.Description = Line(done);
                });
                task.StopTask();
                return written;
            });
    }

    private static DateTimeOffset? TimeOption(ParsedArgs args, string name) =>
        args.Option(name) is { } text
            ? IsoTime.TryParse(text, allowDate: false, out var value) ? value : throw new ArgumentException($"--{name} must be {IsoTime.ExpectedDateTime}")
            : null;

    private static long? LongOption(ParsedArgs args, string name) =>
        args.Option(name) is { } text
            ? long.TryParse(text.Replace("_", "", StringComparison.Ordinal), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
                ? value : throw new ArgumentException($"--{name} takes a whole number")
            : null;

    private static async Task<int> CreateOrgAsync(ParsedArgs args)
    {
        var name = args.Option("name") ?? throw new ArgumentException("org create needs --name");
        await using var db = OpenDatabase(args);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        var org = await Tenants.CreateOrganizationAsync(db, name, TimeProvider.System, CancellationToken.None);
        var key = await Tenants.IssueKeyAsync(db, org.OrgId, KeyRole.Admin, TimeProvider.System, CancellationToken.None, name: "first admin key");
        Console.WriteLine($"organization {org.OrgId} '{org.Name}' created");
        Console.WriteLine($"admin key: {key.KeyId}");
        Console.WriteLine($"secret:    {key.Secret}   (shown once; only its hash is stored)");
        return 0;
    }

    private static async Task<int> ListOrgsAsync(ParsedArgs args)
    {
        await using var db = OpenDatabase(args);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        foreach (var org in await Tenants.ListOrganizationsAsync(db, CancellationToken.None))
            Console.WriteLine($"{org.OrgId}\t{org.Name}");
        return 0;
    }

    private static async Task<int> ManageKeyAsync(ParsedArgs args)
    {
        if (!long.TryParse(args.Option("org"), out var orgId)) throw new ArgumentException($"key {args.Noun} needs --org ID");
        await using var db = OpenDatabase(args);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        if (args.Noun == "list")
        {
            foreach (var k in await Tenants.ListKeysAsync(db, orgId, CancellationToken.None))
                Console.WriteLine($"{k.KeyId}\t{k.Role.ToString().ToLowerInvariant()}\t{(k.RevokedAt is null ? "active" : "revoked")}\t{k.Name}");
            return 0;
        }
        var keyId = args.Option("key") ?? throw new ArgumentException($"key {args.Noun} needs --key KEYID");
        if (args.Noun == "revoke")
        {
            await Tenants.RevokeKeyAsync(db, orgId, keyId, TimeProvider.System, CancellationToken.None);
            Console.WriteLine($"key {keyId} revoked");
            return 0;
        }
        var rotated = await Tenants.RotateKeyAsync(db, orgId, keyId, CancellationToken.None);
        Console.WriteLine($"key {rotated.KeyId} rotated");
        Console.WriteLine($"secret:    {rotated.Secret}   (shown once; the old secret no longer works)");
        return 0;
    }

    private static async Task<int> CreateKeyAsync(ParsedArgs args)
    {
        if (!long.TryParse(args.Option("org"), out var orgId)) throw new ArgumentException("key create needs --org ID");
        if (!Enum.TryParse<KeyRole>(args.Option("role") ?? "write", ignoreCase: true, out var role))
            throw new ArgumentException("--role is read, write or admin");
        await using var db = OpenDatabase(args);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        var key = await Tenants.IssueKeyAsync(db, orgId, role, TimeProvider.System, CancellationToken.None, name: args.Option("name"));
        Console.WriteLine($"{role.ToString().ToLowerInvariant()} key: {key.KeyId}");
        Console.WriteLine($"secret:    {key.Secret}   (shown once; only its hash is stored)");
        return 0;
    }
}

/// <summary>A verb, an optional noun, then --option value pairs and --flags.</summary>
public sealed class ParsedArgs
{
    private readonly Dictionary<string, string?> _options = new(StringComparer.OrdinalIgnoreCase);

    public string Verb { get; private set; } = "";
    public string Noun { get; private set; } = "";

    public string? Option(string name) => _options.TryGetValue(name, out var v) ? v : null;
    public bool Flag(string name) => _options.ContainsKey(name);

    public static ParsedArgs Parse(string[] args)
    {
        var parsed = new ParsedArgs();
        var positional = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i].StartsWith("--", StringComparison.Ordinal))
            {
                var name = args[i][2..];
                var eq = name.IndexOf('=', StringComparison.Ordinal);
                if (eq >= 0) { parsed._options[name[..eq]] = name[(eq + 1)..]; continue; }
                var hasValue = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal);
                parsed._options[name] = hasValue ? args[++i] : null;
            }
            else
            {
                positional.Add(args[i]);
            }
        }
        parsed.Verb = positional.ElementAtOrDefault(0) ?? "";
        parsed.Noun = positional.ElementAtOrDefault(1) ?? "";
        return parsed;
    }
}
