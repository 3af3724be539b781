using System;
using System.IO;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Azure.WebJobs;
using Microsoft.Azure.WebJobs.Extensions.Http;
using Microsoft.Extensions.Logging;

namespace Project
{
    public static class Triggers
    {
        [FunctionName("Hello")]
        public static IActionResult Hello([HttpTrigger(AuthorizationLevel.Anonymous, "get")] HttpRequest req)
        {
            return new OkObjectResult("hello from the project");
        }

        [FunctionName("Tick")]
        public static void Tick([TimerTrigger("0 */5 * * * *")] TimerInfo timer, ILogger log)
        {
            log.LogInformation("tick, past due: {PastDue}", timer.IsPastDue);
        }

        [FunctionName("OnBlob")]
        public static void OnBlob([BlobTrigger("photos/{name}")] Stream blob, string name, ILogger log)
        {
            log.LogInformation("blob {Name}: {Length} bytes, starts with {Text}", name, blob.Length, new StreamReader(blob).ReadToEnd());
        }

        [FunctionName("OnQueue")]
        public static void OnQueue([QueueTrigger("orders")] string order, ILogger log)
        {
            log.LogInformation("order {Order}", order);
        }
    }
}
