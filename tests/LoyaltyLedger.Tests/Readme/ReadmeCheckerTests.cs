using System.Text.Json;

namespace LoyaltyLedger.Tests.Readme;

/// <summary>
/// How <see cref="ReadmeExampleTests"/> reads the README (no database): commands as the shell splits
/// them, requests as curl sends them, and what a stated answer lets through.
/// </summary>
public class ReadmeCheckerTests
{
    private static readonly HashSet<string> NoVolatileFields = [];

    private static string? Mismatch(string pattern, string json, IReadOnlySet<string>? volatileFields = null) =>
        JsonPattern.Parse(pattern).Mismatch(JsonDocument.Parse(json).RootElement, "$", volatileFields ?? NoVolatileFields);

    [Fact]
    public void a_curl_over_several_lines_with_quotes_and_a_variable_becomes_the_request_curl_sends_with_what_the_readme_says_it_answers()
    {
        var readme = ReadmeExamples.Parse("""
            Text.

            ```sh
            B='http://127.0.0.1:5080'
            curl -u demo:demo-secret -H 'Content-Type: application/json' "$B/v1/things" \
              -d '{
              "a": 1}'
            # -> 201 {"id":7,...}; its name: "name":"x",
            #    and items [1,"...",3]
            # a plain comment
            curl "$B/v1/other?q=1"   # a trailing comment
            ```

            Answer (`404`): nothing there.

            ```json
            {"code":"not_found",...}
            ```
            """);

        readme.Commands.Count.ShouldBe(2);
        var post = CurlRequest.From(readme.Commands[0].Words);
        post.Method.ShouldBe(HttpMethod.Post);
        post.Url.ShouldBe(new Uri("http://127.0.0.1:5080/v1/things"));
        post.Body.ShouldBe("{\n  \"a\": 1}");
        using (var request = post.ToRequest())
        {
            request.Content!.Headers.ContentType!.MediaType.ShouldBe("application/json");
            request.Headers.Authorization!.Parameter.ShouldBe(Convert.ToBase64String("demo:demo-secret"u8));
        }
        var stated = readme.Commands[0].Expected;
        stated.Status.ShouldBe(201);
        stated.Fragments.Select(f => (f.Name, f.WholeBody)).ShouldBe([(null, true), ("name", false), ("items", false)]);

        var get = CurlRequest.From(readme.Commands[1].Words);
        get.Method.ShouldBe(HttpMethod.Get);
        get.Url.PathAndQuery.ShouldBe("/v1/other?q=1");
        readme.Commands[1].Expected.Status.ShouldBe(404);
        readme.Commands[1].Expected.Fragments.ShouldHaveSingleItem().WholeBody.ShouldBeTrue();
        readme.StrayCurls.ShouldBeEmpty();
    }

    [Fact]
    public void a_body_without_a_content_type_goes_as_a_form_as_curl_sends_it_so_a_readme_that_forgets_the_header_fails()
    {
        using var request = CurlRequest.From(["curl", "-u", "k:s", "http://127.0.0.1:5080/v1/x", "-d", "{}"]).ToRequest();
        request.Content!.Headers.ContentType!.MediaType.ShouldBe("application/x-www-form-urlencoded");
    }

    [Fact]
    public void an_unknown_curl_option_an_unset_variable_or_a_curl_outside_a_sh_block_is_refused_rather_than_skipped()
    {
        Should.Throw<FormatException>(() => CurlRequest.From(["curl", "--compressed", "http://127.0.0.1:5080/v1/x"]));
        Should.Throw<FormatException>(() => ReadmeExamples.Parse("```sh\ncurl \"$NOWHERE/v1/x\"\n```\n"));
        ReadmeExamples.Parse("Run `curl http://127.0.0.1:5080/v1/x` too.\n").StrayCurls.ShouldHaveSingleItem().Line.ShouldBe(1);
        ReadmeExamples.Parse("```\ncurl -u k:s http://127.0.0.1:5080/v1/x\n```\n").StrayCurls.ShouldHaveSingleItem().Line.ShouldBe(2);
        ReadmeExamples.Parse("Each curl as curl sends it.\n").StrayCurls.ShouldBeEmpty();
    }

    [Fact]
    public void an_object_is_exact_unless_it_ends_with_dots_and_dots_in_an_array_stand_for_any_number_of_elements()
    {
        Mismatch("""{"a":1,...}""", """{"a":1,"b":2}""").ShouldBeNull();
        Mismatch("""{"a":1}""", """{"a":1,"b":2}""").ShouldNotBeNull();
        Mismatch("""{"a":1,"c":...}""", """{"a":1,"b":2}""").ShouldNotBeNull();
        Mismatch("""{"a":100.5,"b":"..."}""", """{"a":100.50,"b":[1]}""").ShouldBeNull();
        Mismatch("""{"a":"1"}""", """{"a":1}""").ShouldNotBeNull();
        Mismatch("""[1,"... more",3]""", "[1,2,2,3]").ShouldBeNull();
        Mismatch("""[1,"... more",3]""", "[1,2]").ShouldNotBeNull();
        Mismatch("""[1,3]""", "[1,2,3]").ShouldNotBeNull();
        Mismatch("""[..., {"a":2}]""", """[{"a":1},{"a":2}]""").ShouldBeNull();
        Mismatch("""{"serialId":"VX"}""", """{"serialId":"V1"}""", new HashSet<string> { "serialId" }).ShouldBeNull();
        Mismatch("""{"serialId":"VX"}""", "{}", new HashSet<string> { "serialId" }).ShouldNotBeNull();
    }

    [Fact]
    public void a_csv_block_after_a_command_states_the_lines_of_its_text_answer()
    {
        var readme = ReadmeExamples.Parse("""
            ```sh
            curl 'http://127.0.0.1:5080/v1/exports/ledger.csv'
            ```

            ```csv
            a,b
            1,"x, y"
            ...
            ```
            """);
        var lines = readme.Commands.ShouldHaveSingleItem().Expected.Lines.ShouldNotBeNull();
        lines.ShouldBe(["a,b", "1,\"x, y\"", "..."]);

        ReadmeExampleTests.LinesMismatch(lines, "a,b\r\n1,\"x, y\"\r\n2,z\r\n").ShouldBeNull();
        ReadmeExampleTests.LinesMismatch(lines, "a,b\r\n1,x\r\n").ShouldNotBeNull();
        ReadmeExampleTests.LinesMismatch(lines, "a,b\r\n").ShouldNotBeNull();
        ReadmeExampleTests.LinesMismatch(["a,b"], "a,b\r\n1,x\r\n").ShouldNotBeNull();
        ReadmeExampleTests.LinesMismatch(["a,b"], "a,b\r\n").ShouldBeNull();
    }
}
