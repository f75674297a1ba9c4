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
public sealed record PositionalSql(string Sql, IReadOnlyList<string> Names)
{
    /// <summary>
    /// The most texts kept. The ledger's statements are a few hundred texts (a statement of several
    /// rows is a text per row count; a list of ids is one argument, <see cref="SqlDialect.InIdList"/>).
    /// A text made with values in it would be a new one each time, so once this many are kept the
    /// cache is emptied and fills again with the texts still in use, rather than growing without end.
    /// </summary>
    private const int MaxKept = 4096;

    private static readonly ConcurrentDictionary<string, PositionalSql?> Kept = new(StringComparer.Ordinal);

    // Counted apart: ConcurrentDictionary.Count takes every one of its locks.
    private static int _kept;

    /// <summary>
    /// The positional form of <paramref name="sql"/>, made once per text; null where the text is
    /// left to the provider's own reading of named placeholders (see <see cref="Rewrite"/>).
    /// </summary>
    public static PositionalSql? Of(string sql)
    {
        if (Kept.TryGetValue(sql, out var kept)) return kept;
        var made = Rewrite(sql);
        if (Interlocked.Increment(ref _kept) > MaxKept)
        {
            Kept.Clear();
            Interlocked.Exchange(ref _kept, 1);
        }
        Kept.TryAdd(sql, made);
        return made;
    }

    /// <summary>
    /// Finds the named placeholders outside quoted strings, quoted names and line comments, as
    /// Npgsql does, and numbers each distinct name once (names that differ in case are distinct, as
    /// they are to Npgsql). Gives up, leaving the text to Npgsql, on anything it does not read as
    /// Npgsql does: block comments, dollar quotes and existing positional placeholders (<c>$</c>),
    /// backslash escapes, a <c>:name</c> placeholder, a name followed by a dot, more than one
    /// statement, or no placeholder at all.
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
            var previous = i > 0 ? sql[i - 1] : '\0';
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
                    // A line comment ends at either line break, as PostgreSQL reads it.
                    var lineEnd = sql.IndexOfAny(['\n', '\r'], i);
                    if (lineEnd < 0) lineEnd = sql.Length;
                    text.Append(sql, i, lineEnd - i);
                    i = lineEnd;
                    continue;
                case '/' when next == '*':
                case '$' or '\\':
                case ':' when IsNameStart(next) && previous != ':':
                case ';' when sql.AsSpan(i + 1).Trim().Length > 0:
                    return null;
                // Npgsql starts no placeholder right after another '@' (the @@ operator).
                case '@' when IsNameStart(next) && previous != '@':
                    var end = i + 1;
                    while (end < sql.Length && IsNamePart(sql[end])) end++;
                    if (end < sql.Length && sql[end] is '.' or '$') return null;
                    var name = sql[(i + 1)..end];
                    var number = names.IndexOf(name) + 1;
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
        return names.Count == 0 ? null : new PositionalSql(text.ToString(), names);
    }

    private static bool IsNameStart(char c) => char.IsLetter(c) || c == '_';

    private static bool IsNamePart(char c) => char.IsLetterOrDigit(c) || c == '_';

    /// <summary>
    /// Binds <paramref name="values"/> to a command for <paramref name="sql"/> and returns the text
    /// to run: numbered and bound by position where <paramref name="dialect"/> binds so and the text
    /// and values allow it (<see cref="Of"/>, <see cref="TryBind"/>); else <paramref name="sql"/>, bound
    /// by name, or null, binding nothing, when <paramref name="byNameToo"/> is false.
    /// </summary>
    internal static string? Bind(SqlDialect dialect, string sql, List<(string Name, object? Value, Type? Declared)> values,
        Func<DbParameter> create, DbParameterCollection parameters, bool byNameToo = true)
    {
        if (dialect.BindsPositionally && Of(sql) is { } positional && positional.TryBind(values, create, parameters)) return positional.Sql;
        if (!byNameToo) return null;
        StatementBatch.Bind(values, create, parameters);
        return sql;
    }

    /// <summary>
    /// Binds <paramref name="values"/> in the order of <see cref="Names"/>, as parameters without
    /// names, which Npgsql sends as they are: a statement bound by name is read by Npgsql on every
    /// execution to find its placeholders and written again with numbers. A name takes the value of
    /// that name as written, or else, as Npgsql would find it, one written with an <c>@</c> or
    /// <c>:</c> before it or in another case. Returns false, binding nothing, when a name has no
    /// value; bound by name, the statement then fails as Npgsql words it.
    /// </summary>
    public bool TryBind(List<(string Name, object? Value, Type? Declared)> values, Func<DbParameter> create, DbParameterCollection parameters)
    {
        var ordered = new (string Name, object? Value, Type? Declared)[Names.Count];
        // A statement of many rows has hundreds of names: looked up by hash past a few.
        var index = values.Count > 8 ? IndexByName(values) : null;
        for (var n = 0; n < Names.Count; n++)
        {
            var found = index is not null ? (index.TryGetValue(Names[n], out var at) ? at : Search(values, Names[n], exact: false)) : IndexOf(values, Names[n]);
            if (found < 0) return false;
            ordered[n] = values[found];
        }
        StatementBatch.Bind(ordered, create, parameters, positional: true);
        return true;
    }

    private static Dictionary<string, int> IndexByName(List<(string Name, object? Value, Type? Declared)> values)
    {
        var index = new Dictionary<string, int>(values.Count, StringComparer.Ordinal);
        for (var v = 0; v < values.Count; v++) index.TryAdd(values[v].Name, v);
        return index;
    }

    private static int IndexOf(List<(string Name, object? Value, Type? Declared)> values, string name)
    {
        var exact = Search(values, name, exact: true);
        return exact >= 0 ? exact : Search(values, name, exact: false);
    }

    private static int Search(List<(string Name, object? Value, Type? Declared)> values, string name, bool exact)
    {
        for (var v = 0; v < values.Count; v++)
        {
            var candidate = values[v].Name.AsSpan();
            if (exact)
            {
                if (candidate.SequenceEqual(name)) return v;
                continue;
            }
            if (candidate.Length > 0 && candidate[0] is '@' or ':') candidate = candidate[1..];
            if (candidate.Equals(name, StringComparison.OrdinalIgnoreCase)) return v;
        }
        return -1;
    }
}
