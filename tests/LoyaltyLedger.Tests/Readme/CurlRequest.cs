using System.Net.Http.Headers;
using System.Text;

namespace LoyaltyLedger.Tests.Readme;

/// <summary>
/// A README curl command as the HTTP request curl would send: <c>-u</c> as HTTP Basic, <c>-H</c>
/// headers, <c>-d</c> as a POST body (sent as <c>application/x-www-form-urlencoded</c> unless a
/// Content-Type header says otherwise, as curl does), <c>-X</c> for another method. An option this
/// class does not know is refused, so the README cannot use one the test would silently ignore.
/// </summary>
public sealed record CurlRequest(HttpMethod Method, Uri Url, IReadOnlyList<(string Name, string Value)> Headers, string? User, string? Body)
{
    public static CurlRequest From(IReadOnlyList<string> words)
    {
        if (words.Count == 0 || words[0] != "curl") throw new FormatException("not a curl command");
        string? url = null, user = null, body = null, method = null;
        var headers = new List<(string, string)>();
        for (var k = 1; k < words.Count; k++)
        {
            string Next() => k + 1 < words.Count ? words[++k] : throw new FormatException($"{words[k]} without its value");
            switch (words[k])
            {
                case "-u" or "--user": user = Next(); break;
                case "-H" or "--header":
                    var header = Next();
                    var colon = header.IndexOf(':', StringComparison.Ordinal);
                    if (colon <= 0) throw new FormatException($"a header without a name: {header}");
                    headers.Add((header[..colon].Trim(), header[(colon + 1)..].Trim()));
                    break;
                case "-d" or "--data" or "--data-raw":
                    if (body is not null) throw new FormatException("two bodies (-d) in one command");
                    body = Next();
                    if (words[k - 1] != "--data-raw" && body.StartsWith('@')) throw new FormatException("a body read from a file (-d @file)");
                    break;
                case "-X" or "--request": method = Next(); break;
                case "-s" or "--silent" or "-S" or "--show-error" or "-i" or "--include": break;
                case var option when option.StartsWith('-'): throw new FormatException($"a curl option the README test does not know: {option}");
                default:
                    if (url is not null) throw new FormatException($"two URLs: {url} and {words[k]}");
                    url = words[k];
                    break;
            }
        }
        if (url is null) throw new FormatException("a curl without a URL");
        return new CurlRequest(new HttpMethod(method ?? (body is null ? "GET" : "POST")), new Uri(url), headers, user, body);
    }

    /// <summary>The request for a client of the in-process server: the URL's path and query, the rest as curl sends it.</summary>
    public HttpRequestMessage ToRequest()
    {
        var request = new HttpRequestMessage(Method, Url.PathAndQuery);
        if (User is not null)
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(User)));
        if (Body is not null)
        {
            request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(Body));
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-www-form-urlencoded");
        }
        foreach (var (name, value) in Headers)
        {
            if (name.Equals("Content-Type", StringComparison.OrdinalIgnoreCase))
            {
                if (request.Content is null) continue;
                request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(value);
            }
            else
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }
        }
        return request;
    }
}
