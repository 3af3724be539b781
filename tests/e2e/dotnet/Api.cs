using System.IO;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Azure.WebJobs;
using Microsoft.Azure.WebJobs.Extensions.Http;
using Microsoft.Extensions.Logging;
using Newtonsoft.Json;

namespace Demo
{
    public class Person { public string Name { get; set; } }

    public static class Api
    {
        [FunctionName("Api")]
        public static async Task<IActionResult> Run(
            [HttpTrigger(AuthorizationLevel.Anonymous, "get", "post", Route = null)] HttpRequest req, ILogger log)
        {
            log.LogInformation("C# HTTP trigger function processed a request.");
            string kind = req.Query["kind"];
            string name = req.Query["name"];
            string requestBody = await new StreamReader(req.Body).ReadToEndAsync();
            dynamic data = requestBody.StartsWith("{") ? JsonConvert.DeserializeObject(requestBody) : null;
            name = name ?? data?.name;
            log.LogWarning("kind {Kind} for {Name}", kind, name);
            switch (kind)
            {
                case "json": return new JsonResult(new { Greeting = "Hello, " + name, Method = req.Method, Agent = (string)req.Headers["x-test"] });
                case "bad": return new BadRequestObjectResult("Please pass a name");
                case "notfound": return new NotFoundResult();
                case "content": return new ContentResult { Content = "<b>hi</b>", ContentType = "text/html", StatusCode = 201 };
                case "status": return new StatusCodeResult(418);
                case "object": return new ObjectResult(new { Value = 42 }) { StatusCode = 202 };
                case "ok": return new OkResult();
                case "read": return new OkObjectResult(await req.ReadAsStringAsync());
                case "typed": return new OkObjectResult((await req.ReadFromJsonAsync<Person>()).Name.ToUpper());
                case "throw": throw new InvalidOperationException("no such thing: " + name);
            }
            return name != null ? (ActionResult)new OkObjectResult($"Hello, {name}") : new BadRequestObjectResult("Please pass a name on the query string or in the request body");
        }
    }
}
