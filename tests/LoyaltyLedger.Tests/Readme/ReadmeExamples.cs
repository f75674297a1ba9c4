using System.Text;
using System.Text.RegularExpressions;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Readme;

/// <summary>What the README says an example answers: a status, and JSON the answer must fit.</summary>
public sealed record Expectation(int? Status, IReadOnlyList<Expectation.Fragment> Fragments, string Source)
{
    /// <summary>
    /// An answer that is text, not JSON (a CSV export): its lines, exactly, from a <c>csv</c> block;
    /// a last line <c>...</c> stands for whatever lines come after.
    /// </summary>
    public IReadOnlyList<string>? Lines { get; init; }

    /// <summary>
    /// One stated fact. <see cref="WholeBody"/>: the answer itself. With a <see cref="Name"/>: some
    /// property of that name, anywhere in the answer. Neither: some value anywhere in the answer.
    /// </summary>
    public sealed record Fragment(string? Name, bool WholeBody, JsonPattern Pattern);

    public static readonly Expectation None = new(null, [], "");

    public Expectation With(Expectation more) =>
        new(more.Status ?? Status, [.. Fragments, .. more.Fragments], Source.Length == 0 ? more.Source : Source + "\n" + more.Source)
        {
            Lines = more.Lines ?? Lines,
        };

    /// <summary>
    /// Reads a comment such as <c>201 {"programId":818,...}</c> or
    /// <c>200 ledgerDetails {"totalEntries":7,...}; the transfer: "customerId":381335653</c>: an
    /// optional status, then JSON values among words. A JSON value right after the status is the
    /// whole answer; one after a bare name or <c>"name":</c> is that property, wherever it is; words
    /// in between are for the reader.
    /// </summary>
    public static Expectation FromComment(string text)
    {
        var fragments = new List<Fragment>();
        var pos = 0;
        int? status = null;
        var status3 = Regex.Match(text, @"^\s*(\d{3})(?=\s|$)");
        if (status3.Success)
        {
            status = int.Parse(status3.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            pos = status3.Length;
        }
        var wordsSoFar = false;
        while (pos < text.Length)
        {
            var c = text[pos];
            if (c is '{' or '[')
            {
                var (pattern, end) = JsonPattern.ParseAt(text, pos);
                var name = NameBefore(text, pos);
                fragments.Add(new Fragment(name, name is null && !wordsSoFar, pattern));
                wordsSoFar = true;
                pos = end;
                continue;
            }
            if (c == '"')
            {
                var close = pos + 1;
                while (close < text.Length && text[close] != '"') close += text[close] == '\\' ? 2 : 1;
                var after = close + 1;
                while (after < text.Length && char.IsWhiteSpace(text[after])) after++;
                if (after < text.Length && text[after] == ':')
                {
                    var value = after + 1;
                    while (value < text.Length && char.IsWhiteSpace(text[value])) value++;
                    if (value < text.Length && text[value] is '{' or '[')
                    {
                        pos = value;
                        continue;
                    }
                    var (pattern, end) = JsonPattern.ParseAt(text, value);
                    fragments.Add(new Fragment(text[(pos + 1)..close], false, pattern));
                    wordsSoFar = true;
                    pos = end;
                    continue;
                }
                pos = after;
                wordsSoFar = true;
                continue;
            }
            if (!char.IsWhiteSpace(c)) wordsSoFar = true;
            pos++;
        }
        return new Expectation(status, fragments, text.Trim());
    }

    /// <summary>The property a JSON value is stated for: <c>"name":</c> or a bare word right before it.</summary>
    private static string? NameBefore(string text, int pos)
    {
        var i = pos - 1;
        while (i >= 0 && char.IsWhiteSpace(text[i])) i--;
        if (i >= 0 && text[i] == ':')
        {
            i--;
            while (i >= 0 && char.IsWhiteSpace(text[i])) i--;
            if (i < 0 || text[i] != '"') return null;
            var end = i;
            i--;
            while (i >= 0 && text[i] != '"') i--;
            return i < 0 ? null : text[(i + 1)..end];
        }
        var wordEnd = i + 1;
        while (i >= 0 && (char.IsLetterOrDigit(text[i]) || text[i] == '_')) i--;
        // A name starts with a letter; a number before the value is the status.
        return wordEnd - (i + 1) > 0 && char.IsLetter(text[i + 1]) ? text[(i + 1)..wordEnd] : null;
    }
}

/// <summary>A command of a README <c>sh</c> block, split into words as the shell would.</summary>
public sealed record ReadmeCommand(int Line, string Text, IReadOnlyList<string> Words)
{
    public Expectation Expected { get; set; } = Expectation.None;
    public override string ToString() => $"README line {Line}: {Text}";
}

/// <summary>
/// The README's runnable examples: every command of its <c>sh</c> blocks in order, with what the
/// README says each answers, from the <c># -&gt;</c> (or <c># HTTP</c>) comment lines after it and from
/// a <c>json</c> block (or, for a text answer such as a CSV export, a <c>csv</c> block of its lines)
/// that follows its block (directly, or after a paragraph that starts with "Answer", whose
/// <c>(`200`)</c> gives the status). Shell variables (<c>L='...'</c>, then <c>$L</c>)
/// carry from one block to the next, as in the reader's shell.
/// </summary>
public sealed partial class ReadmeExamples
{
    public List<ReadmeCommand> Commands { get; } = [];

    /// <summary>Lines with a curl command outside <c>sh</c> blocks (in prose or another block): a request the test would not run.</summary>
    public List<(int Line, string Text)> StrayCurls { get; } = [];

    [GeneratedRegex("""\bcurl\s+(-|https?://|'|"|\$)""")]
    private static partial Regex CurlCommand();

    [GeneratedRegex(@"^Answer \(`(\d{3})`\)")]
    private static partial Regex AnswerParagraph();

    [GeneratedRegex(@"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", RegexOptions.Singleline)]
    private static partial Regex Assignment();

    public static string FindReadme() => RepositoryFiles.PathOf("README.md");

    public static ReadmeExamples Parse(string markdown)
    {
        var lines = markdown.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        var result = new ReadmeExamples();
        var variables = new Dictionary<string, string>();
        var prose = new List<string>();
        List<ReadmeCommand>? lastShBlock = null;
        for (var i = 0; i < lines.Length; i++)
        {
            if (!lines[i].StartsWith("```", StringComparison.Ordinal))
            {
                if (CurlCommand().IsMatch(lines[i])) result.StrayCurls.Add((i + 1, lines[i]));
                if (lines[i].Trim().Length > 0) prose.Add(lines[i].Trim());
                continue;
            }
            var language = lines[i][3..].Trim();
            var first = i + 1;
            var close = first;
            while (close < lines.Length && !lines[close].StartsWith("```", StringComparison.Ordinal)) close++;
            var body = lines[first..Math.Min(close, lines.Length)];
            if (language is "sh" or "bash" or "shell")
            {
                lastShBlock = result.ParseShell(body, first + 1, variables);
            }
            else if (language is "json" or "csv" && lastShBlock is { Count: > 0 } && (prose.Count == 0 || prose[0].StartsWith("Answer", StringComparison.Ordinal)))
            {
                var status = prose.Count > 0 && AnswerParagraph().Match(prose[0]) is { Success: true } m
                    ? int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)
                    : (int?)null;
                var answer = string.Join('\n', body);
                var command = lastShBlock[^1];
                command.Expected = command.Expected.With(language == "json"
                    ? new Expectation(status, [new Expectation.Fragment(null, WholeBody: true, JsonPattern.Parse(answer))], answer)
                    : new Expectation(status, [], answer) { Lines = body });
                lastShBlock = null;
            }
            else
            {
                lastShBlock = null;
            }
            if (language is not ("sh" or "bash" or "shell"))
            {
                for (var k = 0; k < body.Length; k++)
                    if (CurlCommand().IsMatch(body[k])) result.StrayCurls.Add((first + k + 1, body[k]));
            }
            prose.Clear();
            i = close;
        }
        return result;
    }

    private List<ReadmeCommand> ParseShell(string[] body, int firstLine, Dictionary<string, string> variables)
    {
        var commands = new List<ReadmeCommand>();
        ReadmeCommand? last = null;
        StringBuilder? expectation = null;
        void EndExpectation()
        {
            if (expectation is null) return;
            last!.Expected = last.Expected.With(Expectation.FromComment(expectation.ToString()));
            expectation = null;
        }

        for (var j = 0; j < body.Length; j++)
        {
            var line = body[j];
            var trimmed = line.TrimStart();
            if (trimmed.Length == 0)
            {
                EndExpectation();
                last = null;
                continue;
            }
            if (trimmed.StartsWith('#'))
            {
                var comment = trimmed[1..];
                if (comment.StartsWith(" -> ", StringComparison.Ordinal) || comment.StartsWith(" HTTP ", StringComparison.Ordinal))
                {
                    EndExpectation();
                    if (last is null) throw new FormatException($"README line {firstLine + j}: an expected answer with no command right above it");
                    expectation = new StringBuilder(comment.StartsWith(" -> ", StringComparison.Ordinal) ? comment[4..] : comment[6..]);
                }
                else if (expectation is not null && comment.StartsWith("  ", StringComparison.Ordinal))
                {
                    expectation.Append(' ').Append(comment.Trim());
                }
                else
                {
                    EndExpectation();
                }
                continue;
            }

            EndExpectation();
            var start = j;
            var words = new ShellWords(variables);
            while (!words.Feed(body[j]))
            {
                if (++j >= body.Length) throw new FormatException($"README line {firstLine + start}: a command that never ends (an open quote?)");
            }
            var text = string.Join('\n', body[start..(j + 1)]);
            if (words.Words.Count == 1 && Assignment().Match(words.Words[0]) is { Success: true } assignment)
            {
                variables[assignment.Groups[1].Value] = assignment.Groups[2].Value;
                continue;
            }
            last = new ReadmeCommand(firstLine + start, text, words.Words);
            commands.Add(last);
            Commands.Add(last);
        }
        EndExpectation();
        return commands;
    }

    /// <summary>
    /// Splits a command into words as sh does, for what the README uses: single quotes (literal, may
    /// span lines), double quotes and bare words (with <c>$NAME</c> / <c>${NAME}</c>), backslash
    /// continuation lines, and a <c>#</c> comment after the command.
    /// </summary>
    private sealed class ShellWords(Dictionary<string, string> variables)
    {
        private readonly StringBuilder _word = new();
        private bool _inWord;
        private char _quote;

        public List<string> Words { get; } = [];

        /// <summary>Takes one line; false while the command goes on to the next line.</summary>
        public bool Feed(string line)
        {
            for (var k = 0; k < line.Length; k++)
            {
                var c = line[k];
                if (_quote == '\'')
                {
                    if (c == '\'') _quote = '\0';
                    else _word.Append(c);
                    continue;
                }
                if (_quote == '"')
                {
                    if (c == '"') _quote = '\0';
                    else if (c == '\\' && k + 1 < line.Length && "\"\\$`".Contains(line[k + 1], StringComparison.Ordinal)) _word.Append(line[++k]);
                    else if (c == '$') k = Expand(line, k);
                    else _word.Append(c);
                    continue;
                }
                if (char.IsWhiteSpace(c))
                {
                    EndWord();
                    continue;
                }
                if (c == '#' && !_inWord) break;
                // A backslash ending the line joins the next one (a word before it stays open).
                if (c == '\\' && k == line.Length - 1) return false;
                _inWord = true;
                if (c == '\\')
                {
                    _word.Append(line[++k]);
                }
                else if (c is '\'' or '"')
                {
                    _quote = c;
                }
                else if (c == '$')
                {
                    k = Expand(line, k);
                }
                else
                {
                    _word.Append(c);
                }
            }
            if (_quote != '\0')
            {
                _word.Append('\n');
                return false;
            }
            EndWord();
            return true;
        }

        private void EndWord()
        {
            if (!_inWord) return;
            Words.Add(_word.ToString());
            _word.Clear();
            _inWord = false;
        }

        private int Expand(string line, int dollar)
        {
            var braced = dollar + 1 < line.Length && line[dollar + 1] == '{';
            var start = dollar + (braced ? 2 : 1);
            var end = start;
            while (end < line.Length && (char.IsLetterOrDigit(line[end]) || line[end] == '_')) end++;
            var name = line[start..end];
            if (name.Length == 0 || (braced && (end >= line.Length || line[end] != '}')))
                throw new FormatException($"a $ that names no variable in: {line}");
            if (!variables.TryGetValue(name, out var value))
                throw new FormatException($"${name} is used before the README sets it, in: {line}");
            _word.Append(value);
            return braced ? end : end - 1;
        }
    }
}
