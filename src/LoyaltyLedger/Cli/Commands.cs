using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;
using LoyaltyLedger.Audit;
using LoyaltyLedger.Exports;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Seeding;
using LoyaltyLedger.Server.Demo;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tiers;

namespace LoyaltyLedger.Server.Cli;

/// <summary>
/// The executable's commands, on System.CommandLine: help per command (<c>-h</c>), unknown commands
/// and options named, every argument validated before anything is opened or created.
/// Exit codes: 0 success, 1 failure (the ledger refused, a violation was found, the port is taken),
/// 2 usage (a command, option or value that is not understood).
/// </summary>
public static class Commands
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int Usage = 2;

    // Storage, on every command that opens the ledger.
    private static readonly Option<string?> PostgresOption = new("--postgres")
    {
        Description = "PostgreSQL connection string (or LEDGER_POSTGRES); without it, SQLite",
        Recursive = true,
    };
    private static readonly Option<string?> DataDirOption = new("--data-dir")
    {
        Description = "SQLite directory holding ledger.db (or LEDGER_DATA_DIR; default ./data)",
        Recursive = true,
    };

    public static async Task<int> RunAsync(string[] args)
    {
        var root = Build();
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors) await Console.Error.WriteLineAsync($"error: {error.Message}");
            await Console.Error.WriteLineAsync($"Run '{CommandPath(parsed)} --help' for usage.");
            return Usage;
        }
        try
        {
            return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (LedgerException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Code}: {ex.Message}");
            return Failure;
        }
        catch (UsageException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return Usage;
        }
        catch (FailureException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return Failure;
        }
        catch (System.Data.Common.DbException ex)
        {
            // The database's own words (unreachable, a timeout, a constraint), not a stack trace.
            await Console.Error.WriteLineAsync($"error: the database failed: {ex.Message}{(ex.InnerException is { } inner ? $" ({inner.Message})" : "")}");
            return Failure;
        }
    }

    private static string CommandPath(ParseResult parsed)
    {
        var names = new List<string>();
        for (SymbolResult? r = parsed.CommandResult; r is CommandResult c; r = c.Parent) names.Insert(0, c.Command.Name);
        names[0] = "LoyaltyLedger";
        return string.Join(' ', names);
    }

    public static RootCommand Build()
    {
        var root = new RootCommand("LoyaltyLedger: a loyalty points ledger service. Without a command, serve.");
        root.Options.Add(PostgresOption);
        root.Options.Add(DataDirOption);
        var serve = ServeCommand();
        root.Subcommands.Add(serve);
        // `LoyaltyLedger` alone serves, as before; `LoyaltyLedger bogus` is an unknown command.
        root.SetAction((parsed, ct) => ServeAsync(parsed, demo: false, urlsOption: null, ct));
        root.Subcommands.Add(OrgCommand());
        root.Subcommands.Add(KeyCommand());
        root.Subcommands.Add(MigrateCommand());
        root.Subcommands.Add(VerifyCommand());
        root.Subcommands.Add(RenumberCommand());
        root.Subcommands.Add(ExpireCommand());
        root.Subcommands.Add(TiersCommand());
        root.Subcommands.Add(SeedCommand());
        root.Subcommands.Add(ExportCommand());
        root.Subcommands.Add(BackupCommand());
        root.Subcommands.Add(RestoreCommand());
        return root;
    }

    /// <summary>The database chosen by --postgres / --data-dir or their environment variables.</summary>
    public static LedgerDatabase OpenDatabase(ParseResult parsed)
    {
        var postgres = parsed.GetValue(PostgresOption) ?? Environment.GetEnvironmentVariable("LEDGER_POSTGRES");
        if (!string.IsNullOrWhiteSpace(postgres)) return LedgerDatabase.ForPostgres(postgres);
        return LedgerDatabase.ForSqliteFile(Path.Combine(SqliteDirectory(parsed), "ledger.db"));
    }

    private static string SqliteDirectory(ParseResult parsed) =>
        parsed.GetValue(DataDirOption) ?? Environment.GetEnvironmentVariable("LEDGER_DATA_DIR") ?? "data";

    private static bool UsesPostgres(ParseResult parsed) =>
        !string.IsNullOrWhiteSpace(parsed.GetValue(PostgresOption) ?? Environment.GetEnvironmentVariable("LEDGER_POSTGRES"));

    // ---- serve -------------------------------------------------------------------------------

    private static readonly Option<bool> DemoOption = new("--demo") { Description = "seed the demo organization (the specs' customers and programs) and print its credentials" };
    private static readonly Option<string?> UrlsOption = new("--urls") { Description = "where to listen (or ASPNETCORE_URLS; default http://127.0.0.1:5080)" };

    private static readonly Option<string[]> SetOption = new("--set")
    {
        Description = "a setting of the README's Configuration table, e.g. --set Ledger:RateLimit:Burst=50 (repeatable)",
        AllowMultipleArgumentsPerToken = false,
        CustomParser = result =>
        {
            var settings = new List<string>();
            foreach (var token in result.Tokens)
            {
                var eq = token.Value.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0) { result.AddError($"--set takes KEY=VALUE (e.g. Ledger:RateLimit:Burst=50), not '{token.Value}'"); continue; }
                settings.Add(token.Value);
            }
            return [.. settings];
        },
    };

    private static Command ServeCommand()
    {
        var serve = new Command("serve", "Runs the HTTP service: the native API, both read APIs, the reference page at /docs.") { DemoOption, UrlsOption, SetOption };
        serve.SetAction((parsed, ct) => ServeAsync(parsed, parsed.GetValue(DemoOption), parsed.GetValue(UrlsOption), ct));
        return serve;
    }

    private static async Task<int> ServeAsync(ParseResult parsed, bool demo, string? urlsOption, CancellationToken ct)
    {
        var urls = urlsOption ?? Environment.GetEnvironmentVariable("ASPNETCORE_URLS") ?? "http://127.0.0.1:5080";
        foreach (var url in urls.Split(';', StringSplitOptions.RemoveEmptyEntries))
            EnsurePortIsFree(url);
        await using var db = OpenDatabase(parsed);
        await Migrations.ApplyAsync(db, CancellationToken.None);
        WebApplication app;
        try
        {
            app = LedgerServer.Build(new LedgerServerOptions
            {
                Database = db,
                // --set KEY=VALUE goes to the configuration's command-line source: above appsettings.json
                // and the environment.
                Args = ["--urls", urls, .. (parsed.GetValue(SetOption) ?? []).Select(setting => "--" + setting)],
                // The demo runs on one machine: its webhooks go to receivers on that machine (127.0.0.1).
                Configure = demo
                    ? builder => builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Ledger:Webhooks:AllowPrivateTargets"] = "true" })
                    : null,
            });
        }
        catch (SettingsException wrong)
        {
            foreach (var problem in wrong.Problems) await Console.Error.WriteLineAsync($"error: {problem}");
            return Usage;
        }
        var baseUrl = urls.Split(';')[0].TrimEnd('/');
        if (demo)
        {
            var key = Environment.GetEnvironmentVariable("LEDGER_DEMO_KEY") ?? "demo";
            var secret = Environment.GetEnvironmentVariable("LEDGER_DEMO_SECRET") ?? "demo-secret";
            var seeded = await DemoData.EnsureAsync(db, key, secret, CancellationToken.None);
            Console.WriteLine($"""
                LoyaltyLedger demo on {db.Description}
                  organization: {seeded.OrgId} ({DemoData.OrganizationName}){(seeded.Seeded ? ", seeded now" : ", already seeded")}
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
            Console.WriteLine($"LoyaltyLedger on {db.Description}, listening on {urls}; API reference at {baseUrl}/docs, support console at {baseUrl}/console");
        }
        try
        {
            await app.StartAsync(ct);
        }
        catch (IOException ex) when (ex.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException)
        {
            // Taken between the check above and the bind.
            var port = Uri.TryCreate(baseUrl, UriKind.Absolute, out var uri) ? uri.Port.ToString(CultureInfo.InvariantCulture) : urls;
            throw new FailureException($"port {port} is in use; choose another with --urls");
        }
        await app.WaitForShutdownAsync(CancellationToken.None);
        await app.DisposeAsync();
        return Success;
    }

    /// <summary>
    /// Refuses a listen address whose port is taken with one line, before anything is opened: Kestrel
    /// would fail later, after the host has logged a stack trace.
    /// </summary>
    private static void EnsurePortIsFree(string url)
    {
        if (!Uri.TryCreate(url.Replace("://*", "://0.0.0.0", StringComparison.Ordinal).Replace("://+", "://0.0.0.0", StringComparison.Ordinal), UriKind.Absolute, out var uri))
            throw new UsageException($"--urls takes addresses such as http://127.0.0.1:5080, not '{url}'");
        if (uri.Port == 0) return;
        var address = uri.Host == "localhost" ? System.Net.IPAddress.Loopback
            : System.Net.IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) ? ip : System.Net.IPAddress.Any;
        try
        {
            using var probe = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(new System.Net.IPEndPoint(address, uri.Port));
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            throw new FailureException($"port {uri.Port} is in use; choose another with --urls");
        }
    }

    // ---- org and key -------------------------------------------------------------------------

    private static readonly Option<string> NameOption = new("--name") { Description = "the organization's name (unique)", Required = true };
    private static readonly Option<long> OrgOption = OrganizationId(required: true);
    private static readonly Option<string> KeyIdOption = new("--key") { Description = "the key id", Required = true };
    private static readonly Option<string> RoleOption = new("--role") { Description = "read, write or admin", DefaultValueFactory = _ => "write" };
    private static readonly Option<string?> KeyNameOption = new("--name") { Description = "what the key is for (e.g. 'till app')" };

    private static Option<long> OrganizationId(bool required) => new("--org")
    {
        Description = "the organization's id",
        Required = required,
        CustomParser = result => PositiveWholeNumber(result, "--org takes an organization id (a whole number)") ?? 0,
    };

    /// <summary>The one token of an option as a whole number above 0, or an error that quotes it (never a .NET type name).</summary>
    private static long? PositiveWholeNumber(ArgumentResult result, string expectation)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        if (long.TryParse(text.Replace("_", "", StringComparison.Ordinal), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0) return n;
        result.AddError($"{expectation}, not '{text}'");
        return null;
    }

    private static Command OrgCommand()
    {
        var create = new Command("create", "Creates an organization and its first admin key (the secret is shown once).") { NameOption };
        create.SetAction(async (parsed, ct) =>
        {
            var name = parsed.GetRequiredValue(NameOption);
            if (string.IsNullOrWhiteSpace(name)) throw new UsageException("--name cannot be empty");
            await using var db = await OpenMigratedAsync(parsed, ct);
            var org = await Tenants.CreateOrganizationAsync(db, name, TimeProvider.System, ct);
            var key = await Tenants.IssueKeyAsync(db, org.OrgId, KeyRole.Admin, TimeProvider.System, ct, name: "first admin key");
            Console.WriteLine($"organization {org.OrgId} '{org.Name}' created");
            Console.WriteLine($"admin key: {key.KeyId}");
            Console.WriteLine($"secret:    {key.Secret}   (shown once; only its hash is stored)");
            return Success;
        });
        var list = new Command("list", "Lists the organizations.");
        list.SetAction(async (parsed, ct) =>
        {
            await using var db = await OpenMigratedAsync(parsed, ct);
            foreach (var org in await Tenants.ListOrganizationsAsync(db, ct)) Console.WriteLine($"{org.OrgId}\t{org.Name}");
            return Success;
        });
        return new Command("org", "Organizations (tenants).") { create, list };
    }

    private static Command KeyCommand()
    {
        RoleOption.AcceptOnlyFromAmong("read", "write", "admin");
        var create = new Command("create", "Issues a key of an organization (the secret is shown once).") { OrgOption, RoleOption, KeyNameOption };
        create.SetAction(async (parsed, ct) =>
        {
            var role = Enum.Parse<KeyRole>(parsed.GetRequiredValue(RoleOption), ignoreCase: true);
            await using var db = await OpenMigratedAsync(parsed, ct);
            var orgId = await RequireOrganizationAsync(db, parsed.GetValue(OrgOption), ct);
            var key = await Tenants.IssueKeyAsync(db, orgId, role, TimeProvider.System, ct, name: parsed.GetValue(KeyNameOption));
            Console.WriteLine($"{role.ToString().ToLowerInvariant()} key: {key.KeyId}");
            Console.WriteLine($"secret:    {key.Secret}   (shown once; only its hash is stored)");
            return Success;
        });
        var list = new Command("list", "Lists an organization's keys (never their secrets).") { OrgOption };
        list.SetAction(async (parsed, ct) =>
        {
            await using var db = await OpenMigratedAsync(parsed, ct);
            var orgId = await RequireOrganizationAsync(db, parsed.GetValue(OrgOption), ct);
            foreach (var k in await Tenants.ListKeysAsync(db, orgId, ct))
                Console.WriteLine($"{k.KeyId}\t{k.Role.ToString().ToLowerInvariant()}\t{(k.RevokedAt is null ? "active" : "revoked")}\t{k.Name}");
            return Success;
        });
        var rotate = new Command("rotate", "Gives a key a new secret; the old one stops working at once.") { OrgOption, KeyIdOption };
        rotate.SetAction(async (parsed, ct) =>
        {
            await using var db = await OpenMigratedAsync(parsed, ct);
            var orgId = await RequireOrganizationAsync(db, parsed.GetValue(OrgOption), ct);
            var rotated = await Tenants.RotateKeyAsync(db, orgId, parsed.GetRequiredValue(KeyIdOption), ct);
            Console.WriteLine($"key {rotated.KeyId} rotated");
            Console.WriteLine($"secret:    {rotated.Secret}   (shown once; the old secret no longer works)");
            return Success;
        });
        var revoke = new Command("revoke", "Revokes a key; it is refused from the next request on.") { OrgOption, KeyIdOption };
        revoke.SetAction(async (parsed, ct) =>
        {
            await using var db = await OpenMigratedAsync(parsed, ct);
            var orgId = await RequireOrganizationAsync(db, parsed.GetValue(OrgOption), ct);
            var keyId = parsed.GetRequiredValue(KeyIdOption);
            await Tenants.RevokeKeyAsync(db, orgId, keyId, TimeProvider.System, ct);
            Console.WriteLine($"key {keyId} revoked");
            return Success;
        });
        return new Command("key", "API keys.") { create, list, rotate, revoke };
    }

    // ---- migrate, verify, expire -------------------------------------------------------------

    private static Command MigrateCommand()
    {
        var migrate = new Command("migrate", "Applies the schema migrations and exits.");
        migrate.SetAction(async (parsed, ct) =>
        {
            await using var db = OpenDatabase(parsed);
            await ProgressDisplay.RunAsync($"migrating {db.Description}", Migrations.All.Count, "migrations",
                progress => Migrations.ApplyAsync(db, ct, progress));
            Console.WriteLine($"Schema up to date on {db.Description} (migration {Migrations.All[^1].Version}).");
            return Success;
        });
        return migrate;
    }

    private static readonly Option<long?> OptionalOrgOption = new("--org")
    {
        Description = "one organization's id (default: all)",
        CustomParser = result => PositiveWholeNumber(result, "--org takes an organization id (a whole number)"),
    };

    private static Command VerifyCommand()
    {
        var verify = new Command("verify", "Audits every wallet, lot and debit; exits 1 on any violation.") { OptionalOrgOption };
        verify.SetAction(async (parsed, ct) =>
        {
            var orgId = parsed.GetValue(OptionalOrgOption);
            await using var db = await OpenMigratedAsync(parsed, ct);
            if (orgId is { } id) await RequireOrganizationAsync(db, id, ct);
            var report = await ProgressDisplay.RunAsync($"verifying {db.Description}", null, "checks",
                _ => LedgerVerifier.VerifyAsync(db, orgId, ct));
            Console.WriteLine($"verify {db.Description}{(orgId is null ? "" : $" organization {orgId}")}:");
            Console.WriteLine($"  organizations {report.Organizations}, wallets {report.Wallets}, events {report.Events}, entries {report.Entries}, lots {report.Lots}, idempotency keys {report.IdempotencyKeys}");
            foreach (var violation in report.Violations) Console.WriteLine($"  VIOLATION: {violation}");
            Console.WriteLine(report.Passed ? "  all invariants hold" : $"  {report.Violations.Count} violation(s)");
            return report.Passed ? Success : Failure;
        });
        return verify;
    }

    private static Command RenumberCommand()
    {
        var renumber = new Command("renumber",
            "Sets again every page number the read APIs seek by (and the counts postings number on from) that differs from the rows; repairs what a server older than migration 22 wrote after the upgrade.")
            { OptionalOrgOption };
        renumber.SetAction(async (parsed, ct) =>
        {
            var orgId = parsed.GetValue(OptionalOrgOption);
            await using var db = await OpenMigratedAsync(parsed, ct);
            if (orgId is { } id) await RequireOrganizationAsync(db, id, ct);
            var report = await ProgressDisplay.RunAsync($"renumbering {db.Description}", null, "steps",
                _ => PageNumbers.RenumberAsync(db, orgId, ct));
            Console.WriteLine($"renumber {db.Description}{(orgId is null ? "" : $" organization {orgId}")}:");
            Console.WriteLine($"  set again: events {report.Events}, owner counters {report.Owners}, lines {report.Lines}, voucher redemptions {report.VoucherRedemptions}, wallets {report.Wallets}");
            Console.WriteLine(report.Total == 0 ? "  every number was already right" : $"  {report.Total} row(s) renumbered");
            return Success;
        });
        return renumber;
    }

    private static readonly Option<DateTimeOffset?> AsOfOption = new("--as-of")
    {
        Description = "the instant to expire as of, ISO 8601 with an offset (default now; never in the future)",
        CustomParser = result =>
        {
            var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (IsoTime.TryParse(text, allowDate: false, out var at)) return at;
            result.AddError($"--as-of must be {IsoTime.ExpectedDateTime}, not '{text}'");
            return null;
        },
    };

    private static Command ExpireCommand()
    {
        var expire = new Command("expire", "Converts due promised points and expires due points; running it twice changes nothing.") { AsOfOption, OptionalOrgOption };
        expire.SetAction(async (parsed, ct) =>
        {
            var now = TimeProvider.System.GetUtcNow();
            var asOf = parsed.GetValue(AsOfOption) ?? now;
            if (asOf > now) throw new UsageException("--as-of cannot be in the future: that would expire points before their date");
            var orgId = parsed.GetValue(OptionalOrgOption);
            await using var db = await OpenMigratedAsync(parsed, ct);
            // The run's postings share commits as the server's do (the server's default lanes: the
            // command reads no configuration).
            if (db.Provider == DatabaseProvider.Postgres)
            {
                var defaults = new PostgresSettings();
                db.UseWriteLanes(defaults.WriteLanes, defaults.WriteBatch);
            }
            if (orgId is { } id) await RequireOrganizationAsync(db, id, ct);
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var result = await ProgressDisplay.RunAsync($"expiring as of {IsoTime.Format(asOf)}", null, "wallets",
                _ => LifecycleRun.RunAsync(db, orgId, asOf, now, "cli", ct));
            var seconds = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
            Console.WriteLine($"as of {IsoTime.Format(asOf)}: {result.Conversions} promised lots converted, {result.Expiries} wallets expired, " +
                $"{result.ExpiryNotices} expiry notices sent; {seconds.ToString("0.0", CultureInfo.InvariantCulture)} s");
            foreach (var e in result.Events)
                Console.WriteLine($"  {e.EventName} event {e.EventId}: {string.Join(", ", e.Entries.Select(x => $"{x.EntryType} {x.Points} {x.Currency ?? "points"} ({x.Category})"))}");
            return Success;
        });
        return expire;
    }

    private static readonly Option<DateTimeOffset?> TierAsOfOption = new("--as-of")
    {
        Description = "the instant to evaluate as of, ISO 8601 with an offset (default now; never in the future)",
        CustomParser = AsOfOption.CustomParser,
    };

    private static Command TiersCommand()
    {
        var evaluate = new Command("evaluate",
            "Decides renewal or downgrade for every owner whose tier period ended by --as-of; running it twice changes nothing.") { TierAsOfOption, OptionalOrgOption };
        evaluate.SetAction(async (parsed, ct) =>
        {
            var now = TimeProvider.System.GetUtcNow();
            var asOf = parsed.GetValue(TierAsOfOption) ?? now;
            if (asOf > now) throw new UsageException("--as-of cannot be in the future: a tier is decided at the end of its period, not before");
            var orgId = parsed.GetValue(OptionalOrgOption);
            await using var db = await OpenMigratedAsync(parsed, ct);
            if (orgId is { } id) await RequireOrganizationAsync(db, id, ct);
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var result = await ProgressDisplay.RunAsync($"evaluating tiers as of {IsoTime.Format(asOf)}", null, "owners",
                _ => TierEvaluation.RunAsync(db, orgId, asOf, now, "cli", ct));
            var seconds = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
            Console.WriteLine($"as of {IsoTime.Format(asOf)}: {result.Evaluated} owners evaluated ({result.Renewed} renewed, {result.Downgraded} downgraded, " +
                $"{result.Rolled} rolled over at their tier), {result.Upgraded} upgraded" +
                (result.RunId is { } run ? $"; run {run}" : "") +
                $"; {seconds.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)} s");
            return Success;
        });
        return new Command("tiers", "Tier operations.") { evaluate };
    }

    // ---- seed --------------------------------------------------------------------------------

    private static Option<long> Positive(string name, string description, long defaultValue) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result => PositiveWholeNumber(result, $"{name} takes a whole number above 0") ?? 0,
    };

    private static readonly Option<long> CustomersOption = Positive("--customers", "customers to create", 1_000_000);
    private static readonly Option<long> EventsOption = Positive("--events", "events to create", 20_000_000);
    private static readonly Option<string> OrgNameOption = new("--org-name") { Description = "the organization's name (unique)", DefaultValueFactory = _ => "seeded organization" };
    /// <summary>An option that takes a number from <paramref name="min"/> to <paramref name="max"/>.</summary>
    private static Option<double> Between(string name, string description, double min, double max, double defaultValue) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max) return n;
            result.AddError($"{name} takes a number from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}, not '{text}'");
            return 0;
        },
    };

    private static readonly Option<double> SkewOption = Between("--skew", "Zipf skew of activity across customers (0 = even)", 0, 5, 1.0);
    private static readonly Option<long> RandomSeedOption = Positive("--random-seed", "the generator's seed (same seed, same data)", 7);
    private static readonly Option<string?> SeedKeyIdOption = new("--key-id") { Description = "a fixed admin key id (with --key-secret)" };
    private static readonly Option<string?> SeedKeySecretOption = new("--key-secret") { Description = "its secret" };
    private static readonly Option<FileInfo?> SeedTiersOption = new("--tiers")
    {
        Description = "a tier policy to configure on the seeded program first (a JSON file, the body of PUT /v1/programs/{id}/tiers); every owner's tier is then counted from its history",
    };
    private static readonly Option<double> SeedTiersDueOption = Between("--tiers-due",
        "with --tiers: the share of owners whose period has ended by the end of the history, due at an evaluation as of that instant (0 to 1)", 0, 1, 0.5);

    private static readonly Option<DateTimeOffset?> SeedUntilOption = Instant("--until",
        "the end of the seeded two years of history, ISO 8601 with an offset (default a day ago; never in the future); "
        + "points expire 36 months after they are earned, so a history that ends over three years back is all due for the expiry run");

    private static Command SeedCommand()
    {
        var seed = new Command("seed", "Bulk-loads a synthetic organization (no other writer may use the database meanwhile).")
        {
            CustomersOption, EventsOption, OrgNameOption, SkewOption, RandomSeedOption, SeedKeyIdOption, SeedKeySecretOption,
            SeedTiersOption, SeedTiersDueOption, SeedUntilOption,
        };
        seed.Validators.Add(result =>
        {
            if ((result.GetValue(SeedKeyIdOption) is null) != (result.GetValue(SeedKeySecretOption) is null))
                result.AddError("--key-id and --key-secret go together");
            if (result.GetResult(SeedTiersDueOption) is { Implicit: false } && result.GetValue(SeedTiersOption) is null)
                result.AddError("--tiers-due goes with --tiers");
        });
        seed.SetAction(async (parsed, ct) =>
        {
            SeedTiers? tiers = null;
            if (parsed.GetValue(SeedTiersOption) is { } tiersFile)
            {
                if (!tiersFile.Exists) throw new UsageException($"--tiers: no file '{tiersFile.FullName}'");
                TierPolicy policy;
                try { policy = TierPolicy.FromJson(await File.ReadAllTextAsync(tiersFile.FullName, ct)); }
                catch (JsonException ex) { throw new UsageException($"--tiers: '{tiersFile.Name}' is not a tier policy ({ex.Message})"); }
                tiers = new SeedTiers(policy, parsed.GetValue(SeedTiersDueOption));
            }
            var options = new SeedOptions
            {
                OrganizationName = parsed.GetRequiredValue(OrgNameOption),
                Customers = parsed.GetValue(CustomersOption),
                Events = parsed.GetValue(EventsOption),
                Skew = parsed.GetValue(SkewOption),
                RandomSeed = (int)Math.Min(int.MaxValue, parsed.GetValue(RandomSeedOption)),
                KeyId = parsed.GetValue(SeedKeyIdOption),
                KeySecret = parsed.GetValue(SeedKeySecretOption),
                Tiers = tiers,
            };
            if (parsed.GetValue(SeedUntilOption) is { } until)
            {
                if (until > TimeProvider.System.GetUtcNow()) throw new UsageException("--until cannot be in the future: the seeded history is what already happened");
                options = options with { Until = until };
            }
            await using var db = await OpenMigratedAsync(parsed, ct);
            if (await Tenants.FindOrganizationAsync(db, options.OrganizationName, ct) is not null)
                throw new FailureException($"an organization named '{options.OrganizationName}' already exists; choose another with --org-name");
            Console.WriteLine($"seeding '{options.OrganizationName}' on {db.Description}: {options.Customers:N0} customers, {options.Events:N0} events");
            var result = await ProgressDisplay.RunAsync("seeding", options.Customers, "customers",
                progress => OrganizationSeeder.SeedAsync(db, options, p => progress(p.CustomersDone, $"{p.Entries:N0} entries, {p.EntriesPerSecond:N0} entries/s"), ct));
            Console.WriteLine($"organization {result.OrgId} '{options.OrganizationName}' seeded in {result.Elapsed.TotalSeconds:N1} s");
            Console.WriteLine($"  customers {result.Customers:N0}, events {result.Events:N0}, entries {result.Entries:N0}, lots {result.Lots:N0}, rows {result.Rows:N0}");
            Console.WriteLine($"  rate: {result.EntriesPerSecond:N0} entries/s, {result.Rows / Math.Max(0.001, result.Elapsed.TotalSeconds):N0} rows/s");
            Console.WriteLine($"  program {result.ProgramId}; heaviest customer {result.HeaviestCustomerId} ({result.HeaviestCustomerEvents:N0} events, account {result.HeaviestAccountNumber}); light customer {result.LightCustomerId} (account {result.LightAccountNumber})");
            if (result.Tiers is { } seededTiers)
            {
                Console.WriteLine($"  tiers: {string.Join(", ", seededTiers.ByTier.Select(t => $"{t.Tier} {t.Owners:N0}"))}; " +
                    $"{seededTiers.Due:N0} of {seededTiers.Owners:N0} owners due as of {IsoTime.Format(seededTiers.AsOf)}");
                Console.WriteLine($"  evaluate them with: tiers evaluate --as-of {IsoTime.Format(seededTiers.AsOf)}");
            }
            Console.WriteLine($"admin key: {result.Key.KeyId}");
            Console.WriteLine($"secret:    {result.Key.Secret}   (shown once; only its hash is stored)");
            return Success;
        });
        return seed;
    }

    // ---- export --------------------------------------------------------------------------------

    private static readonly Option<string> FormatOption = new("--format") { Description = "csv or ndjson", Required = true };
    private static readonly Option<FileInfo> ExportOutOption = new("--out") { Description = "the file to write (replaced at the end, never left half written)", Required = true };
    private static Option<DateTimeOffset?> Instant(string name, string description) => new(name)
    {
        Description = description,
        CustomParser = result =>
        {
            var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (IsoTime.TryParse(text, allowDate: false, out var at)) return at;
            result.AddError($"{name} must be {IsoTime.ExpectedDateTime}, not '{text}'");
            return null;
        },
    };
    private static Option<long?> Id(string name, string description) => new(name)
    {
        Description = description,
        CustomParser = result => PositiveWholeNumber(result, $"{name} takes an id (a whole number)"),
    };
    private static readonly Option<DateTimeOffset?> FromInstantOption = Instant("--from", "lines from this instant (inclusive), ISO 8601 with an offset");
    private static readonly Option<DateTimeOffset?> ToInstantOption = Instant("--to", "lines before this instant (exclusive)");
    private static readonly Option<long?> CustomerOption = Id("--customer", "one customer's lines");
    private static readonly Option<long?> GroupOption = Id("--group", "one user group's pooled lines");
    private static readonly Option<long?> ProgramOption = Id("--program", "one program's lines");
    private static readonly Option<string?> EventNameOption = new("--event-name") { Description = "one kind of event (TransactionAdd, PointsRedemption, ...)" };

    private static Command ExportCommand()
    {
        FormatOption.AcceptOnlyFromAmong("csv", "ndjson");
        var export = new Command("export", "Writes an organization's ledger lines to a CSV or NDJSON file, as GET /v1/exports/ledger.csv and .ndjson do.")
        {
            FormatOption, ExportOutOption, OptionalOrgOption, FromInstantOption, ToInstantOption, CustomerOption, GroupOption, ProgramOption, EventNameOption,
        };
        export.SetAction(async (parsed, ct) =>
        {
            LedgerExportFormats.TryParse(parsed.GetRequiredValue(FormatOption), out var format);
            var output = parsed.GetRequiredValue(ExportOutOption).FullName;
            var filter = new LedgerExportFilter
            {
                From = parsed.GetValue(FromInstantOption),
                To = parsed.GetValue(ToInstantOption),
                CustomerId = parsed.GetValue(CustomerOption),
                GroupId = parsed.GetValue(GroupOption),
                ProgramId = parsed.GetValue(ProgramOption),
                EventName = parsed.GetValue(EventNameOption),
            };
            await using var db = await OpenMigratedAsync(parsed, ct);
            var organizations = (await Tenants.ListOrganizationsAsync(db, ct)).ToList();
            var orgId = parsed.GetValue(OptionalOrgOption) is { } id
                ? await RequireOrganizationAsync(db, id, ct)
                : organizations.Count == 1 ? organizations[0].OrgId
                : throw new UsageException($"the database holds {organizations.Count} organizations: name one with --org ID (see 'LoyaltyLedger org list')");
            await using var export = await LedgerExport.OpenAsync(db, orgId, filter, ReadConsistency.Primary, ct);
            var total = await export.CountAsync(ct);
            var started = System.Diagnostics.Stopwatch.StartNew();
            // Written beside the target and moved over it at the end: a refused, failed or interrupted
            // export leaves no half file under the name asked for.
            var partial = output + ".partial";
            long written;
            try
            {
                await using (var file = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous))
                {
                    written = await ProgressDisplay.RunAsync("exporting", total, "lines",
                        progress => export.WriteAsync(file, format, done => progress(done, ""), ct));
                }
                File.Move(partial, output, overwrite: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                if (File.Exists(partial)) File.Delete(partial);
                throw new FailureException($"cannot write {output}: {ex.Message}");
            }
            catch
            {
                if (File.Exists(partial)) File.Delete(partial);
                throw;
            }
            var seconds = Math.Max(0.001, started.Elapsed.TotalSeconds);
            Console.WriteLine($"exported {written:N0} ledger lines of organization {orgId} to {output} ({format.FileExtension()}) in {seconds:N1} s, {written / seconds:N0} lines/s");
            return Success;
        });
        return export;
    }

    // ---- backup and restore (SQLite) -----------------------------------------------------------

    private static readonly Option<FileInfo> OutOption = new("--out") { Description = "the backup file to write (must not exist)", Required = true };
    private static readonly Option<FileInfo> FromOption = new("--from") { Description = "the backup file to restore", Required = true };

    private static Command BackupCommand()
    {
        var backup = new Command("backup", "Copies the SQLite ledger to a file, consistently, while the server runs (SQLite's online backup). For PostgreSQL use pg_dump (see the README).") { OutOption };
        backup.SetAction(async (parsed, ct) =>
        {
            if (UsesPostgres(parsed)) throw new UsageException("backup copies a SQLite ledger; for PostgreSQL use pg_dump (see the README)");
            var target = parsed.GetRequiredValue(OutOption);
            if (target.Exists) throw new UsageException($"{target.FullName} exists; a backup never overwrites a file");
            var source = Path.Combine(SqliteDirectory(parsed), "ledger.db");
            if (!File.Exists(source)) throw new FailureException($"there is no ledger at {Path.GetFullPath(source)}");
            var pages = await ProgressDisplay.RunAsync($"backing up {Path.GetFullPath(source)}", null, "pages",
                _ => SqliteBackup.BackupAsync(source, target.FullName, ct));
            target.Refresh();
            Console.WriteLine($"backed up {Path.GetFullPath(source)} to {target.FullName} ({pages:N0} pages, {target.Length / 1024.0 / 1024.0:N1} MiB)");
            return Success;
        });
        return backup;
    }

    private static Command RestoreCommand()
    {
        var restore = new Command("restore", "Restores a SQLite backup into --data-dir (which must hold no ledger yet), then verifies it.") { FromOption };
        restore.SetAction(async (parsed, ct) =>
        {
            if (UsesPostgres(parsed)) throw new UsageException("restore writes a SQLite ledger; for PostgreSQL use pg_restore (see the README)");
            var from = parsed.GetRequiredValue(FromOption);
            if (!from.Exists) throw new UsageException($"{from.FullName} does not exist");
            var target = Path.Combine(SqliteDirectory(parsed), "ledger.db");
            if (File.Exists(target)) throw new UsageException($"{Path.GetFullPath(target)} exists; restore into an empty directory");
            await SqliteBackup.RestoreAsync(from.FullName, target, ct);
            await using var db = await OpenMigratedAsync(parsed, ct);
            var report = await LedgerVerifier.VerifyAsync(db, null, ct);
            Console.WriteLine($"restored {from.FullName} to {Path.GetFullPath(target)}: {report.Events:N0} events, {report.Entries:N0} entries; "
                + (report.Passed ? "all invariants hold" : $"{report.Violations.Count} violation(s)"));
            return report.Passed ? Success : Failure;
        });
        return restore;
    }

    // ---- shared ------------------------------------------------------------------------------

    private static async Task<LedgerDatabase> OpenMigratedAsync(ParseResult parsed, CancellationToken ct)
    {
        var db = OpenDatabase(parsed);
        await Migrations.ApplyAsync(db, ct);
        return db;
    }

    private static async Task<long> RequireOrganizationAsync(LedgerDatabase db, long orgId, CancellationToken ct)
    {
        if ((await Tenants.ListOrganizationsAsync(db, ct)).All(o => o.OrgId != orgId))
            throw new FailureException($"organization {orgId} does not exist (see 'LoyaltyLedger org list')");
        return orgId;
    }
}

/// <summary>A command line that is not understood: exit 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>A command that understood its arguments but could not do its work: exit 1.</summary>
public sealed class FailureException(string message) : Exception(message);
