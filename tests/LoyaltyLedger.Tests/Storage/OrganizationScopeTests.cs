using System.Text.RegularExpressions;
using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// The schema is ready to be distributed by organization (docs/scaling.md): every table but the
/// reference tables carries org_id, every primary key and unique constraint leads with it, and every
/// statement in the code against a distributed table names the organization. The keys are read from
/// the catalog, the statements from the SQL string literals of the sources under src/.
/// </summary>
public abstract partial class OrganizationScopeTests(DatabaseFixture db)
{
    /// <summary>Small or global tables that Citus would replicate to every node, with the reason each is not distributed.</summary>
    public static readonly IReadOnlyDictionary<string, string> ReferenceTables = new Dictionary<string, string>
    {
        ["organizations"] = "one row per organization, read beside every organization's rows and listed across them by the admin API",
        ["api_keys"] = "a request's key is read by its id before the organization is known",
        ["console_sessions"] = "a support console request's session is read by the cookie's session id before the organization is known",
        ["console_key_ring"] = "the console's cookie keys, shared by every server and every organization; no org_id",
        ["schema_migrations"] = "the migrations applied, one row per migration; no org_id",
    };

    /// <summary>
    /// SQLite keeps these keys as migration 13 made them: it cannot change a primary key in place,
    /// and a SQLite file is never distributed. (Row ids, INTEGER PRIMARY KEY, are no index at all.)
    /// </summary>
    private static readonly string[] SqliteKeepsItsKey = ["expiry_notices"];

    /// <summary>
    /// Statements that read or write across organizations by design, each with its reason (listed
    /// in docs/scaling.md under "What changes for cross-organization (admin) queries"). A file named with
    /// no fragment is allowed whole.
    /// </summary>
    public static readonly IReadOnlyList<(string File, string? Fragment, string Reason)> CrossOrganization =
    [
        ("Storage/Migrations.cs", null, "schema changes and their backfills run once over the whole database"),
        ("Audit/LedgerVerifier.cs", null, "`verify` without --org audits every organization in one pass"),
        ("Ledger/PageNumbers.cs", null, "`renumber` without --org repairs every organization's page numbers in one pass"),
        ("Outbox/OutboxSequencer.cs", null, "the sequencer numbers every organization's outbox rows in one commit order"),
        ("Outbox/Outbox.cs", "FROM outbox_events WHERE position > @afterPosition", "every organization's feed, read by the webhook fan-out"),
        ("Outbox/Outbox.cs", "SELECT MAX(position) FROM outbox_events", "the highest position given, across organizations"),
        ("Outbox/Outbox.cs", "SELECT COALESCE(MAX(position), 0) AS position FROM outbox_events", "a write numbers its outbox rows on from the highest position given, in the one commit order of every organization"),
        ("Webhooks/WebhookEndpoints.cs", "SELECT MAX(position) FROM outbox_events", "a new endpoint's cursor starts at the highest position given"),
        ("Webhooks/WebhookQueue.cs", "FROM webhook_endpoints WHERE enabled = 1", "the fan-out reads every enabled endpoint's cursor"),
        ("Webhooks/WebhookQueue.cs", "UPDATE webhook_endpoints SET cursor_position", "the fan-out moves the cursors it covered"),
        ("Webhooks/WebhookQueue.cs", "FROM webhook_endpoints e", "the dispatcher finds and claims the due endpoints of every organization"),
        ("Webhooks/WebhookQueue.cs", "UPDATE webhook_endpoints SET lease_owner", "the dispatcher leases the endpoints it claimed"),
        ("Webhooks/WebhookQueue.cs", "FROM webhook_deliveries WHERE status = 'pending'", "the queue-depth metric counts every organization's deliveries"),
        ("Storage/SqliteDialect.cs", null, "SQLite only (the next outbox id); a SQLite file is never distributed"),
    ];

    [Fact]
    public async Task every_table_but_the_reference_tables_has_an_org_id_column()
    {
        var tables = await TablesAsync();
        ReferenceTables.Keys.Except(tables.Keys).ShouldBeEmpty("a reference table listed here is not in the schema");
        tables.Where(t => !ReferenceTables.ContainsKey(t.Key) && !t.Value.Contains("org_id")).Select(t => t.Key).Order()
            .ShouldBeEmpty("a table without org_id cannot be distributed by organization");
    }

    [Fact]
    public async Task every_primary_key_and_unique_constraint_leads_with_org_id()
    {
        var keys = await UniqueKeysAsync();
        keys.ShouldNotBeEmpty();
        var exempt = db.Provider == DatabaseProvider.Sqlite ? ReferenceTables.Keys.Concat(SqliteKeepsItsKey) : ReferenceTables.Keys;
        keys.Where(k => !exempt.Contains(k.Table) && k.Columns.FirstOrDefault() != "org_id")
            .Select(k => $"{k.Table}.{k.Name} ({string.Join(", ", k.Columns)})").Order()
            .ShouldBeEmpty("a distributed table's primary key and unique constraints lead with org_id");
    }

    [Fact]
    public async Task every_statement_against_a_distributed_table_names_its_organization()
    {
        var distributed = (await TablesAsync()).Keys.Where(t => !ReferenceTables.ContainsKey(t)).ToHashSet();
        var root = RepositoryFiles.Root();
        var statements = Statements(root).ToList();
        statements.Count.ShouldBeGreaterThan(200, "the scan reads the SQL of the sources under src/");

        var unscoped = new List<string>();
        var allowedUsed = new HashSet<int>();
        foreach (var (file, line, sql) in statements)
        {
            var problems = Unscoped(sql, distributed);
            if (problems.Count == 0) continue;
            var allowed = CrossOrganization.Select((a, i) => (a, i))
                .Where(x => file.EndsWith(x.a.File, StringComparison.Ordinal) && (x.a.Fragment is null || Flat(sql).Contains(x.a.Fragment, StringComparison.Ordinal)))
                .ToList();
            if (allowed.Count > 0) { allowedUsed.UnionWith(allowed.Select(x => x.i)); continue; }
            unscoped.Add($"{file}:{line}: {string.Join(", ", problems)} in: {Flat(sql)}");
        }
        unscoped.ShouldBeEmpty("every statement against a distributed table filters or writes by org_id (or is listed in CrossOrganization)");
        CrossOrganization.Where((_, i) => !allowedUsed.Contains(i)).Select(a => $"{a.File}: {a.Fragment}")
            .ShouldBeEmpty("an entry of CrossOrganization that no statement needs any more");
    }

    /// <summary>
    /// What a statement lacks: each reference to a distributed table (FROM, JOIN, UPDATE, DELETE FROM)
    /// needs a condition on its org_id (with a parameter, or equal to another table's org_id), and an
    /// INSERT or COPY into one names org_id among its columns; and a whole statement that reads (not a
    /// fragment appended to one) must compare some org_id with a parameter, so that it reaches one
    /// organization.
    /// </summary>
    private static List<string> Unscoped(string sql, HashSet<string> distributed)
    {
        var problems = new List<string>();
        var reads = false;
        var writesOrg = false;
        foreach (Match r in TableReference().Matches(sql))
        {
            var (kind, table) = (r.Groups["kind"].Value, r.Groups["table"].Value);
            if (!distributed.Contains(table)) continue;
            if (kind is "INTO" or "COPY")
            {
                var columns = ColumnList().Match(sql, r.Index + r.Length);
                if (columns.Success && columns.Index == r.Index + r.Length && OrgId().IsMatch(columns.Groups[1].Value)) { writesOrg = true; continue; }
                problems.Add($"{kind} {table} without org_id");
                continue;
            }
            reads = true;
            var alias = r.Groups["alias"].Success && !Keywords.Contains(r.Groups["alias"].Value.ToUpperInvariant()) ? r.Groups["alias"].Value : null;
            var scope = Scope(sql, r.Index);
            var column = alias is null ? $@"(?<![\w.])(?:{table}\.)?org_id" : $@"\b(?:{alias}|{table})\.org_id";
            if (!Regex.IsMatch(scope, column + @"\s*=") && !Regex.IsMatch(scope, @"=\s*" + column + @"\b"))
                problems.Add($"{kind} {table}{(alias is null ? "" : " " + alias)} without a condition on org_id");
        }
        if (reads && !writesOrg && WholeStatement().IsMatch(sql) && !OrgParameter().IsMatch(sql)) problems.Add("no org_id = @parameter");
        return problems;
    }

    private static readonly HashSet<string> Keywords =
    [
        "WHERE", "SET", "ON", "JOIN", "LEFT", "INNER", "CROSS", "GROUP", "ORDER", "LIMIT", "USING", "VALUES", "SELECT", "RETURNING",
        "UNION", "AND", "OR", "FOR", "HAVING", "DO", "AS", "OFFSET", "WITH", "FULL", "RIGHT",
    ];

    /// <summary>The innermost parenthesized part of <paramref name="sql"/> around <paramref name="at"/> (a subquery), or all of it.</summary>
    private static string Scope(string sql, int at)
    {
        var start = 0;
        for (int i = at - 1, depth = 0; i >= 0; i--)
        {
            if (sql[i] == ')') depth++;
            else if (sql[i] == '(' && depth-- == 0) { start = i + 1; break; }
        }
        var end = sql.Length;
        for (int i = at, depth = 0; i < sql.Length; i++)
        {
            if (sql[i] == '(') depth++;
            else if (sql[i] == ')' && depth-- == 0) { end = i; break; }
        }
        return sql[start..end];
    }

    /// <summary>Every SQL statement in a string literal of the sources under src/: (file, line, statement).</summary>
    private static IEnumerable<(string File, int Line, string Sql)> Statements(string root)
    {
        var src = Path.Combine(root, "src");
        foreach (var path in Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories).Order())
        {
            var file = Path.GetRelativePath(src, path).Replace('\\', '/');
            if (file.Split('/').Any(part => part is "bin" or "obj")) continue;
            var text = File.ReadAllText(path);
            foreach (Match m in Literal().Matches(text))
            {
                var literal = m.Groups.Values.Skip(1).First(g => g.Success).Value;
                // A condition the dialect keeps from choosing an index still names the column.
                literal = UnindexedColumn().Replace(literal, "$1");
                if (!Sql().IsMatch(literal)) continue;
                var line = text.AsSpan(0, m.Index).Count('\n') + 1;
                foreach (var statement in literal.Split(';'))
                    if (TableReference().IsMatch(statement)) yield return (file, line, statement);
            }
        }
    }

    private static string Flat(string sql) => Whitespace().Replace(sql, " ").Trim();

    private async Task<Dictionary<string, HashSet<string>>> TablesAsync() =>
        db.Provider == DatabaseProvider.Postgres
            ? (await db.Database.ReadAsync(c => c.QueryAsync<(string Table, string Column)>(
                    """
                    SELECT table_name, column_name FROM information_schema.columns
                    WHERE table_schema = current_schema() AND table_name IN
                        (SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE')
                    """), CancellationToken.None))
                .GroupBy(r => r.Table).ToDictionary(g => g.Key, g => g.Select(r => r.Column).ToHashSet())
            : (await db.Database.ReadAsync(c => c.QueryAsync<(string Table, string Column)>(
                    """
                    SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
                    WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
                    """), CancellationToken.None))
                .GroupBy(r => r.Table).ToDictionary(g => g.Key, g => g.Select(r => r.Column).ToHashSet());

    /// <summary>Every unique index (primary keys and unique constraints included), with its columns in order.</summary>
    private async Task<List<(string Table, string Name, string[] Columns)>> UniqueKeysAsync()
    {
        if (db.Provider == DatabaseProvider.Postgres)
        {
            return (await db.Database.ReadAsync(c => c.QueryAsync<(string Table, string Name, string Columns)>(
                    """
                    SELECT t.relname, i.relname,
                        (SELECT string_agg(a.attname, ',' ORDER BY k.ord)
                         FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum)
                    FROM pg_index x
                    JOIN pg_class i ON i.oid = x.indexrelid
                    JOIN pg_class t ON t.oid = x.indrelid
                    JOIN pg_namespace n ON n.oid = t.relnamespace
                    WHERE n.nspname = current_schema() AND x.indisunique
                    """), CancellationToken.None))
                .Select(r => (r.Table, r.Name, r.Columns.Split(','))).ToList();
        }
        return await db.Database.ReadAsync(async c =>
        {
            var keys = new List<(string, string, string[])>();
            var tables = await c.QueryAsync<string>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'");
            foreach (var table in tables)
            {
                foreach (var index in await c.QueryAsync<string>("SELECT name FROM pragma_index_list(@table) WHERE \"unique\" = 1", new { table }))
                {
                    var columns = await c.QueryAsync<string>("SELECT name FROM pragma_index_info(@index) ORDER BY seqno", new { index });
                    keys.Add((table, index, columns.ToArray()));
                }
            }
            return keys;
        }, CancellationToken.None);
    }

    [GeneratedRegex("\\$*\"\"\"(.*?)\"\"\"|\\$?@\"((?:[^\"]|\"\")*)\"|\\$?\"((?:[^\"\\\\\\n]|\\\\.)*)\"", RegexOptions.Singleline)]
    private static partial Regex Literal();

    [GeneratedRegex(@"\b(?:SELECT|INSERT|UPDATE|DELETE|COPY)\b")]
    private static partial Regex Sql();

    [GeneratedRegex(@"\b(?<kind>FROM|JOIN|UPDATE|INTO|COPY)\s+(?<table>[a-z_][a-z0-9_]*)\b(?:\s+(?:AS\s+)?(?<alias>[A-Za-z_][A-Za-z0-9_]*))?")]
    private static partial Regex TableReference();

    [GeneratedRegex(@"\s*\(([^)]*)\)")]
    private static partial Regex ColumnList();

    [GeneratedRegex(@"\borg_id\b")]
    private static partial Regex OrgId();

    [GeneratedRegex(@"\borg_id\s*(?:=\s*@|=\s*ANY\s*\(\s*@|IN\s+@)")]
    private static partial Regex OrgParameter();

    [GeneratedRegex("""\{dialect\.Unindexed\("([^"]+)"\)\}""")]
    private static partial Regex UnindexedColumn();

    [GeneratedRegex(@"^\s*(?:SELECT|WITH|INSERT|UPDATE|DELETE|COPY)\b")]
    private static partial Regex WholeStatement();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();
}

public sealed class OrganizationScopeTestsOnSqlite(SqliteDatabase db) : OrganizationScopeTests(db), IClassFixture<SqliteDatabase>;

public sealed class OrganizationScopeTestsOnPostgres(PostgresDatabase db) : OrganizationScopeTests(db), IClassFixture<PostgresDatabase>;
