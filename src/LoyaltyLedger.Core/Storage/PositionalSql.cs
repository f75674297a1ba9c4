using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace LoyaltyLedger.Storage;

/// <summary>
/// A statement with named parameters (<c>@name</c>) rewritten once to positional ones (<c>$1</c>,
/// <c>$2</c>, ...) and the names in their positions. Npgsql sends a command whose parameters are all
/// unnamed as it is; given named ones, it parses the SQL of every command it sends to rewrite them,
/// which was the largest single cost of Npgsql's own in a posting's profile. A posting's statements
/// are the same few dozen texts over and over, so each is rewritten once per process.
/// </summary>
/// <remarks>
/// Only <c>@</c> followed by a letter or an underscore starts a name, and never inside a string
/// literal, a quoted identifier or a comment; <c>@&gt;</c> and the like stay operators.
/// </remarks>
public sealed record PositionalSql(string Sql, string[] Names)
{
    private static readonly ConcurrentDictionary<string, PositionalSql> Rewritten = new(StringComparer.Ordinal);

    /// <summary>Bounds the cache, should some caller build statement texts without end (none does today).</summary>
    private const int MaxCached = 4096;

    public static PositionalSql Of(string sql)
    {
        if (Rewritten.TryGetValue(sql, out var known)) return known;
        var rewritten = Rewrite(sql);
        if (Rewritten.Count < MaxCached) Rewritten.TryAdd(sql, rewritten);
        return rewritten;
    }

    internal static PositionalSql Rewrite(string sql)
    {
        var names = new List<string>();
        var text = new StringBuilder(sql.Length);
        var i = 0;
        while (i < sql.Length)
        {
            var c = sql[i];
            if (c is '\'' or '"')
            {
                // A literal or a quoted identifier, to its closing quote (a doubled quote is inside it).
                var end = i + 1;
                while (end < sql.Length)
                {
                    if (sql[end] != c) end++;
                    else if (end + 1 < sql.Length && sql[end + 1] == c) end += 2;
                    else
                    {
                        end++;
                        break;
                    }
                }
                text.Append(sql, i, end - i);
                i = end;
            }
            else if (c == '-' && i + 1 < sql.Length && sql[i + 1] == '-')
            {
                var end = sql.IndexOf('\n', i);
                end = end < 0 ? sql.Length : end;
                text.Append(sql, i, end - i);
                i = end;
            }
            else if (c == '/' && i + 1 < sql.Length && sql[i + 1] == '*')
            {
                var end = sql.IndexOf("*/", i + 2, StringComparison.Ordinal);
                end = end < 0 ? sql.Length : end + 2;
                text.Append(sql, i, end - i);
                i = end;
            }
            else if (c == '@' && i + 1 < sql.Length && (char.IsAsciiLetter(sql[i + 1]) || sql[i + 1] == '_'))
            {
                var end = i + 1;
                while (end < sql.Length && (char.IsAsciiLetterOrDigit(sql[end]) || sql[end] == '_')) end++;
                var name = sql[(i + 1)..end];
                var position = names.IndexOf(name);
                if (position < 0)
                {
                    names.Add(name);
                    position = names.Count - 1;
                }
                text.Append('$').Append((position + 1).ToString(CultureInfo.InvariantCulture));
                i = end;
            }
            else
            {
                text.Append(c);
                i++;
            }
        }
        return new PositionalSql(text.ToString(), [.. names]);
    }
}
