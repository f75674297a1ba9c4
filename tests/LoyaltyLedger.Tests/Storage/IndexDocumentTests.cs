using System.Text.RegularExpressions;
using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// docs/indexes.md lists every index of the tables a posting writes, each with the read that needs
/// it. A migrated database must hold exactly those indexes, so an index added or dropped without
/// the document (or the document without the migration) fails here.
/// </summary>
public abstract partial class IndexDocumentTests(DatabaseFixture db)
{
    private static readonly string[] WritePathTables =
    [
        "bills", "events", "ledger_entries", "lots", "lot_movements", "wallets", "write_audit", "idempotency_keys",
        "owner_event_counts", "outbox_events", "owner_tiers", "tier_changes",
    ];

    /// <summary>
    /// An index as both sides can state it: SQLite names a constraint's index itself, so there it is
    /// "(constraint)"; a partial index's condition without parentheses, quotes or casts.
    /// </summary>
    private sealed record Index(string Table, string Name, string Columns, bool Unique, string? Where)
    {
        public override string ToString() =>
            $"{Table}.{Name} ({Columns}){(Unique ? " unique" : "")}{(Where is null ? "" : " WHERE " + Where)}";
    }

    private static string? Condition(string? sql) =>
        string.IsNullOrWhiteSpace(sql) ? null
            : Whitespace().Replace(sql.Replace("::text", "", StringComparison.Ordinal).Replace("(", "", StringComparison.Ordinal)
                .Replace(")", "", StringComparison.Ordinal).Replace("\"", "", StringComparison.Ordinal), " ").Trim().ToLowerInvariant();

    /// <summary>A documented index; <paramref name="PostgresOnly"/> when its definition says "(PostgreSQL only)": SQLite does not have it.</summary>
    private sealed record Documented(Index Index, bool IsConstraint, bool IsPrimaryKey, bool PostgresOnly);

    [Fact]
    public async Task the_indexes_of_the_write_path_tables_are_the_ones_docs_indexes_md_lists()
    {
        var documented = ReadDocument();
        documented.Select(d => d.Index.Table).Distinct().Order().ShouldBe(WritePathTables.Order(),
            "docs/indexes.md has one section per table a posting writes");

        var inCatalog = db.Provider == DatabaseProvider.Postgres ? await PostgresIndexesAsync() : await SqliteIndexesAsync();
        var expected = db.Provider == DatabaseProvider.Postgres
            ? documented.Select(d => d.Index)
            : await SqliteExpectationAsync(documented);

        var missing = expected.Select(i => i.ToString()).Except(inCatalog.Select(i => i.ToString())).Order().ToList();
        var undocumented = inCatalog.Select(i => i.ToString()).Except(expected.Select(i => i.ToString())).Order().ToList();
        missing.ShouldBeEmpty("documented in docs/indexes.md but not in the database");
        undocumented.ShouldBeEmpty("in the database but not documented in docs/indexes.md");
    }

    private async Task<List<Index>> PostgresIndexesAsync() =>
        (await db.Database.ReadAsync(c => c.QueryAsync<(string Table, string Name, string Columns, bool Unique, string? Where)>(
            """
            SELECT t.relname, i.relname,
                (SELECT string_agg(a.attname, ', ' ORDER BY k.ord)
                 FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum),
                x.indisunique, pg_get_expr(x.indpred, x.indrelid)
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = current_schema() AND t.relname = ANY(@tables)
            """, new { tables = WritePathTables }), CancellationToken.None))
        .Select(r => new Index(r.Table, r.Name, r.Columns, r.Unique, Condition(r.Where))).ToList();

    private async Task<List<Index>> SqliteIndexesAsync() =>
        await db.Database.ReadAsync(async c =>
        {
            var indexes = new List<Index>();
            foreach (var table in WritePathTables)
            {
                var list = await c.QueryAsync<(string Name, long Unique, string Origin, string? Sql)>(
                    """
                    SELECT l.name, l."unique", l.origin, m.sql
                    FROM pragma_index_list(@table) l LEFT JOIN sqlite_master m ON m.type = 'index' AND m.name = l.name
                    """, new { table });
                foreach (var (name, unique, origin, sql) in list)
                {
                    var columns = await c.QueryAsync<string>("SELECT name FROM pragma_index_info(@name) ORDER BY seqno", new { name });
                    var where = sql is null ? null : WhereClause().Match(sql) is { Success: true } m ? m.Groups[1].Value : null;
                    indexes.Add(new Index(table, origin == "c" ? name : "(constraint)", string.Join(", ", columns), unique != 0, Condition(where)));
                }
            }
            return indexes;
        }, CancellationToken.None);

    /// <summary>
    /// The documented indexes as SQLite holds them: a constraint's index under its own name, and an
    /// identity primary key (<c>INTEGER PRIMARY KEY</c>) not as an index at all but as the row id
    /// (PostgreSQL's (org_id, id) of migration 20 is the id alone there).
    /// </summary>
    private async Task<List<Index>> SqliteExpectationAsync(IReadOnlyList<Documented> documented)
    {
        var rowIds = await db.Database.ReadAsync(async c =>
        {
            var found = new Dictionary<string, string>();
            foreach (var table in WritePathTables)
            {
                var keys = (await c.QueryAsync<(string Name, string Type)>(
                    "SELECT name, type FROM pragma_table_info(@table) WHERE pk > 0", new { table })).ToList();
                if (keys is [var key] && key.Type.Equals("INTEGER", StringComparison.OrdinalIgnoreCase)) found[table] = key.Name;
            }
            return found;
        }, CancellationToken.None);
        return documented
            .Where(d => !d.PostgresOnly)
            .Where(d => !(d.IsPrimaryKey && rowIds.TryGetValue(d.Index.Table, out var rowId) && (d.Index.Columns == rowId || d.Index.Columns == "org_id, " + rowId)))
            .Select(d => d.IsConstraint ? d.Index with { Name = "(constraint)" } : d.Index)
            .ToList();
    }

    /// <summary>The rows of the section "Indexes of the write-path tables": one table per "### table" heading.</summary>
    private static List<Documented> ReadDocument()
    {
        var lines = File.ReadAllLines(DocumentPath());
        var start = Array.FindIndex(lines, l => l.Trim() == "## Indexes of the write-path tables");
        start.ShouldBeGreaterThanOrEqualTo(0, "docs/indexes.md has a section \"Indexes of the write-path tables\"");
        var rows = new List<Documented>();
        string? table = null;
        foreach (var line in lines.Skip(start + 1).TakeWhile(l => !l.StartsWith("## ", StringComparison.Ordinal)))
        {
            if (line.StartsWith("### ", StringComparison.Ordinal)) { table = line[4..].Trim(); continue; }
            var row = Row().Match(line);
            if (!row.Success) continue;
            table.ShouldNotBeNull($"docs/indexes.md: the row of {row.Groups["name"].Value} comes before any table's heading");
            var definition = Definition().Match(row.Groups["definition"].Value.Trim());
            definition.Success.ShouldBeTrue($"docs/indexes.md: cannot read the definition of {row.Groups["name"].Value}: '{row.Groups["definition"].Value}'");
            var kind = definition.Groups["kind"].Value;
            var columns = string.Join(", ", definition.Groups["columns"].Value.Split(',').Select(c => c.Trim()));
            rows.Add(new Documented(
                new Index(table, row.Groups["name"].Value, columns, kind.Length > 0, Condition(definition.Groups["where"].Value)),
                IsConstraint: kind is "primary key" or "unique constraint",
                IsPrimaryKey: kind == "primary key",
                PostgresOnly: definition.Groups["postgresOnly"].Success));
        }
        return rows;
    }

    private static string DocumentPath() => RepositoryFiles.PathOf("docs", "indexes.md");

    [GeneratedRegex(@"^\|\s*`(?<name>[a-z0-9_]+)`\s*\|(?<definition>[^|]+)\|")]
    private static partial Regex Row();

    [GeneratedRegex(@"^(?:(?<kind>primary key|unique constraint|unique index)\s*)?\((?<columns>[^)]+)\)(?:\s+WHERE\s+(?<where>.+?))?(?<postgresOnly>\s+\(PostgreSQL only\))?$")]
    private static partial Regex Definition();

    [GeneratedRegex(@"\sWHERE\s+(.+)$", RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex WhereClause();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();
}

public sealed class IndexDocumentTestsOnSqlite(SqliteDatabase db) : IndexDocumentTests(db), IClassFixture<SqliteDatabase>;

public sealed class IndexDocumentTestsOnPostgres(PostgresDatabase db) : IndexDocumentTests(db), IClassFixture<PostgresDatabase>;
