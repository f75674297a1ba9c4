using System.Collections.Concurrent;
using System.Data.Common;
using System.Text;

namespace LoyaltyLedger.Storage;

/// <summary>
/// A statement's text with PostgreSQL's positional placeholders (<c>$1</c>, <c>$2</c>, ...) where
/// it was written with named ones (<c>@org</c>), and the names in the order of their numbers.
/// </summary>
/// <param name="Sql">The text as PostgreSQL takes it.</param>
/// <param name="Names">The name each placeholder stands for: <c>$1</c> for the first.</param>
public sealed record PositionalSql(string Sql, string[] Names)
{
    /// <summary>
    /// The most texts kept. The ledger's statements are a few hundred texts (a statement of several
    /// rows is a text per row count); a text made with a value in it would be a new one each time,
    /// and past this it is bound by name instead of growing the memory without end.
    /// </summary>
    private const int MaxKept = 4096;

    private static readonly ConcurrentDictionary<string, PositionalSql?> Kept = new(StringComparer.Ordinal);

    /// <summary>
    /// The positional form of <paramref name="sql"/>, made once per text; null where the text is
    /// left to the provider's own reading of named placeholders (see <see cref="Rewrite"/>).
    /// </summary>
    public static PositionalSql? Of(string sql)
    {
        if (Kept.TryGetValue(sql, out var kept)) return kept;
        var made = Rewrite(sql);
        if (Kept.Count < MaxKept) Kept.TryAdd(sql, made);
        return made;
    }

    /// <summary>Whether <paramref name="sql"/> has been read for its placeholders and kept (by <see cref="Of"/>).</summary>
    public static bool IsKept(string sql) => Kept.ContainsKey(sql);

    /// <summary>
    /// Finds the named placeholders outside quoted strings, quoted names and line comments, numbering
    /// each distinct name once (case-insensitive, as Npgsql matches names). Gives up, leaving the
    /// text to Npgsql, on anything it does not read as Npgsql does: block comments, dollar quotes
    /// and existing positional placeholders (<c>$</c>), backslash escapes, a <c>:name</c>
    /// placeholder, a name followed by a dot, more than one statement, or no placeholder at all.
    /// </summary>
    public static PositionalSql? Rewrite(string sql)
    {
        var names = new List<string>();
        var text = new StringBuilder(sql.Length);
        var i = 0;
        while (i < sql.Length)
        {
            var ch = sql[i];
            var next = i + 1 < sql.Length ? sql[i + 1] : '\0';
            switch (ch)
            {
                case '\'' or '"':
                    // A doubled quote inside ends the literal and starts another: copied alike.
                    var close = sql.IndexOf(ch, i + 1);
                    if (close < 0 || sql.AsSpan(i, close - i).Contains('\\')) return null;
                    text.Append(sql, i, close - i + 1);
                    i = close + 1;
                    continue;
                case '-' when next == '-':
                    var lineEnd = sql.IndexOf('\n', i);
                    if (lineEnd < 0) lineEnd = sql.Length;
                    text.Append(sql, i, lineEnd - i);
                    i = lineEnd;
                    continue;
                case '/' when next == '*':
                case '$' or '\\':
                case ':' when IsNameStart(next) && (i == 0 || sql[i - 1] != ':'):
                case ';' when sql.AsSpan(i + 1).Trim().Length > 0:
                    return null;
                case '@' when IsNameStart(next):
                    var end = i + 1;
                    while (end < sql.Length && IsNamePart(sql[end])) end++;
                    if (end < sql.Length && sql[end] is '.' or '$') return null;
                    var name = sql[(i + 1)..end];
                    var number = names.FindIndex(n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase)) + 1;
                    if (number == 0)
                    {
                        names.Add(name);
                        number = names.Count;
                    }
                    text.Append('$').Append(number);
                    i = end;
                    continue;
            }
            text.Append(ch);
            i++;
        }
        return names.Count == 0 ? null : new PositionalSql(text.ToString(), [.. names]);
    }

    private static bool IsNameStart(char c) => char.IsLetter(c) || c == '_';

    private static bool IsNamePart(char c) => char.IsLetterOrDigit(c) || c == '_';

    /// <summary>
    /// Binds <paramref name="values"/> in the order of <see cref="Names"/>, as parameters without
    /// names, which Npgsql sends as they are: a statement bound by name is read by Npgsql on every
    /// execution to find its placeholders and written again with numbers. Returns false, binding
    /// nothing, when a name has no value; bound by name, the statement then fails as Npgsql words it.
    /// </summary>
    internal bool TryBind(List<(string Name, object? Value, Type? Declared)> values, Func<DbParameter> create, DbParameterCollection parameters)
    {
        var ordered = new (string Name, object? Value, Type? Declared)[Names.Length];
        for (var n = 0; n < Names.Length; n++)
        {
            var found = IndexOf(values, Names[n]);
            if (found < 0) return false;
            ordered[n] = values[found];
        }
        StatementBatch.Bind(ordered, create, parameters, positional: true);
        return true;
    }

    // The name as written first (the usual case, and the cheapest comparison), then as Npgsql
    // would also find it: without a prefix (a dictionary's key may be "@org"), in any case.
    private static int IndexOf(List<(string Name, object? Value, Type? Declared)> values, string name)
    {
        for (var v = 0; v < values.Count; v++)
            if (string.Equals(values[v].Name, name, StringComparison.Ordinal)) return v;
        for (var v = 0; v < values.Count; v++)
        {
            var candidate = values[v].Name.AsSpan();
            if (candidate.Length > 0 && candidate[0] is '@' or ':' or '$') candidate = candidate[1..];
            if (candidate.Equals(name, StringComparison.OrdinalIgnoreCase)) return v;
        }
        return -1;
    }
}
