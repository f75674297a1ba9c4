using System.Text.RegularExpressions;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Tests.Readme;
using Microsoft.Extensions.Configuration;

namespace LoyaltyLedger.Tests.Server;

/// <summary>The server's settings: every one documented, each checked before the server starts.</summary>
public sealed class SettingsTests
{
    private static IEnumerable<string> Keys() =>
        SettingsRegistration.All.SelectMany(s => s.Type.GetProperties().Where(p => p.CanWrite).Select(p => $"{s.Section}:{p.Name}"));

    [Fact]
    public void the_readme_configuration_table_lists_every_setting_of_every_settings_type_and_no_other()
    {
        var readme = File.ReadAllText(ReadmeExamples.FindReadme());
        var section = readme[readme.IndexOf("## Configuration", StringComparison.Ordinal)..readme.IndexOf("## Commands", StringComparison.Ordinal)];
        var documented = Regex.Matches(section, @"^\| `(Ledger:[A-Za-z:]+)` \|", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        documented.ShouldBe(Keys().ToList(), ignoreOrder: true);
    }

    [Fact]
    public void wrong_settings_are_each_named_in_one_line_and_right_ones_pass()
    {
        var wrong = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Ledger:RateLimit:Burst"] = "0",
            ["Ledger:ExpiryInterval"] = "banana",
            ["Ledger:Telemetry:OtlpEndpoint"] = "ftp://collector",
            ["Ledger:Webhooks:MaxConcurrency"] = "many",
            ["Ledger:Postgres:ReadSlots"] = "-1",
        }).Build();
        var problems = SettingsRegistration.Check(wrong);
        problems.ShouldBe([
            "Ledger:RateLimit:Burst must be at least 1.",
            "Ledger:ExpiryInterval must be a duration (hh:mm:ss, e.g. 00:05:00), not 'banana'.",
            "Ledger:Telemetry:OtlpEndpoint must be an http or https URL, not 'ftp://collector'.",
            "Ledger:Webhooks:MaxConcurrency must be a whole number, not 'many'.",
            "Ledger:Postgres:ReadSlots must be 0 (no bound) to 256.",
        ], ignoreOrder: true);
        problems.ShouldAllBe(p => !p.Contains("System.", StringComparison.Ordinal));

        var right = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Ledger:RateLimit:Burst"] = "50",
            ["Ledger:ExpiryInterval"] = "00:00:00",
            ["Ledger:Server:ShutdownTimeout"] = "00:00:20",
            ["Ledger:Postgres:ReadSlots"] = "4",
        }).Build();
        SettingsRegistration.Check(right).ShouldBeEmpty();
    }

    [Fact]
    public void read_replicas_are_checked_one_line_each_and_refused_on_sqlite_with_the_reason()
    {
        var settings = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Ledger:ReadReplicas:0"] = "Host=127.0.0.1;Port=5433;Username=ledger;Password=s3cret;Database=ledger",
            ["Ledger:ReadReplicas:1"] = "Port=5434;Password=s3cret",
            ["Ledger:ReadReplicas:2"] = "this is = not; a connection string",
            ["Ledger:ReplicaTokenWait"] = "-00:00:01",
            ["Ledger:ReplicaMaxLag"] = "00:00:00",
        }).Build();
        var problems = SettingsRegistration.Check(settings, LoyaltyLedger.Storage.DatabaseProvider.Postgres);
        problems.ShouldBe([
            "Ledger:ReadReplicas:1 names no Host: give each replica as a PostgreSQL connection string (Host=...;Port=...;Username=...;Database=...).",
            "Ledger:ReadReplicas:2 is not a PostgreSQL connection string (Host=...;Port=...;Username=...;Database=...).",
            "Ledger:ReplicaTokenWait must be 0 (no wait) to 00:00:10.",
            "Ledger:ReplicaMaxLag must be more than 0 and at most 00:01:00.",
        ], ignoreOrder: true);
        problems.ShouldAllBe(p => !p.Contains("s3cret", StringComparison.Ordinal));

        var one = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Ledger:ReadReplicas:0"] = "Host=127.0.0.1;Port=5433;Username=ledger;Database=ledger",
        }).Build();
        SettingsRegistration.Check(one, LoyaltyLedger.Storage.DatabaseProvider.Postgres).ShouldBeEmpty();
        SettingsRegistration.Check(one, LoyaltyLedger.Storage.DatabaseProvider.Sqlite).ShouldBe([
            "Ledger:ReadReplicas are PostgreSQL streaming replicas: they need the server on PostgreSQL (--postgres or LEDGER_POSTGRES), not SQLite.",
        ]);

        var plain = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Ledger:ReadReplicas"] = "Host=127.0.0.1;Port=5433",
        }).Build();
        SettingsRegistration.Check(plain).ShouldBe([
            "Ledger:ReadReplicas is a list: give each item as Ledger:ReadReplicas:0, Ledger:ReadReplicas:1, ... (environment: LEDGER_READREPLICAS__0).",
        ]);
    }

    [Fact]
    public void ledger_prefixed_environment_variables_are_settings_of_the_ledger_section_below_the_command_line()
    {
        Environment.SetEnvironmentVariable("LEDGER_SETTINGSTEST__PROBE", "from-environment");
        try
        {
            var configuration = new ConfigurationManager();
            configuration.AddCommandLine(["--Ledger:SettingsTest:Other=from-command-line"]);
            configuration.AddLedgerEnvironment();
            configuration["Ledger:SettingsTest:Probe"].ShouldBe("from-environment");
            configuration.AddCommandLine(["--Ledger:SettingsTest:Probe=from-command-line"]);
            configuration["Ledger:SettingsTest:Probe"].ShouldBe("from-command-line");
        }
        finally
        {
            Environment.SetEnvironmentVariable("LEDGER_SETTINGSTEST__PROBE", null);
        }
    }
}
