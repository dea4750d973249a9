"""Every word of `agetune report`, in English and Russian.

`TEXT[lang][key]` is a `str.format` template. Numbers are formatted before
they are inserted and stay the same in every language (a decimal point, not
a comma), and so do hyperparameter names such as `training.learning_rate`.
Keys that end in `_heading` are section headings: the tests check that none
of the English ones appears in a Russian report.
"""

from __future__ import annotations

from tuner.errors import AgetuneError

LANGUAGES = ("en", "ru")

EN: dict[str, str] = {
    # Title, banners and the summary box
    "title": "Age model search report: {run}",
    "subtitle": "Run folder {run}, search space {space}, written {written}.",
    "partial": "Partial: the search is still running ({trials} trials so far). "
               "This report covers the trials that have finished; run it again when the search ends.",
    "interrupted": "Partial: the search was interrupted ({trials} trials so far). Resume it with the same "
                   "`agetune search` command, then run this report again.",
    "near_constant": "Trial {trial} estimates nearly the same age for everyone: its estimates vary by {predicted} "
                     "years (standard deviation) against {true} years for the true ages. The model is undertrained, "
                     "and its errors by age band and age check say little. Train longer, with ImageNet weights or "
                     "larger images, before using it.",
    "synthetic": "The photos of this run are synthetic test faces, so its numbers say nothing about real customers.",
    "summary_heading": "Summary",
    "summary_best": "Best model: trial {trial}, val MAE {mae} years, {difference}.",
    "summary_better": "{years} years better than the baseline",
    "summary_worse": "{years} years worse than the baseline",
    "summary_same": "the same as the baseline",
    "summary_is_baseline": "which is the baseline configuration itself",
    "summary_no_baseline": "no baseline to compare with",
    "summary_minors": "At threshold {threshold}, {share} of minors would pass without an ID check "
                      "({passed} of {minors}), and {adult_share} of adults would be asked for an ID "
                      "({checked} of {adults}).",
    "summary_no_minors": "The validation set has no minors (under {legal_age}), so the share of minors passing "
                         "without an ID check cannot be measured; {adult_share} of adults would be asked for an ID "
                         "at threshold {threshold}.",
    # Data
    "data_heading": "Data",
    "data_counts": "{photos} photos: {train} for training and {validation} for validation (split.csv of the run).",
    "data_limit": "The search used a seeded sample of {limit} photos of the dataset.",
    "age_mean": "Mean age",
    "age_median": "Median age",
    "age_min": "Youngest",
    "age_max": "Oldest",
    "statistic": "Statistic",
    "all_photos": "All photos",
    "train": "Training",
    "validation": "Validation",
    "plot_ages_title": "Age distribution",
    "plot_ages_x": "Age (years, 5-year bins)",
    "plot_ages_y": "Photos",
    # Search
    "search_heading": "Search",
    "setting": "Setting",
    "value": "Value",
    "tuner": "Tuner",
    "objective": "Objective",
    "budget": "Budget",
    "budget_hyperband": "max_epochs {max_epochs}, factor {factor}, {iterations} Hyperband iteration(s)",
    "budget_trials": "max_trials {max_trials}, {epochs} epoch(s) per trial",
    "trials_run": "Trials run",
    "trials_completed": "Completed",
    "trials_failed": "Failed or invalid",
    "trials_running": "Still running",
    "wall_time": "Wall time",
    "wall_time_so_far": "{duration} so far",
    "unknown": "unknown",
    "train_time": "Training time of all trials",
    "hardware": "Hardware",
    "hardware_value": "{host}: {cpus} CPU cores, {gpus}; TensorFlow {tensorflow}, Keras {keras}, "
                      "Keras Tuner {keras_tuner}",
    "no_gpu": "no GPU",
    "space_heading": "Searched hyperparameters",
    "space_intro": "The search space `{space}` varies these hyperparameters; every other setting is fixed.",
    "space_none": "The search space `{space}` fixes every hyperparameter, so all trials train the same configuration.",
    "hyperparameter": "Hyperparameter",
    "kind": "Type",
    "values": "Values",
    # Selection and the baseline
    "selection_heading": "Selection of the best model",
    "selection_why": "Trial {trial} has the lowest validation MAE among the {completed} completed trials: "
                     "{mae} years at epoch {epoch}.",
    "selection_runner_up": "The next best, trial {trial}, reached {mae} years.",
    "selection_tie": "Trials {trials} tie with it on validation MAE; trial {trial} wins because it trained the "
                     "fewest epochs (then the lowest trial id).",
    "selection_caveat": "The validation photos both chose this trial and measure it, so its validation MAE is "
                        "slightly optimistic; photos the search never saw would give an unbiased figure.",
    "baseline_from_run": "The baseline is the best trial ({trial}) of the run {run}, given with --baseline.",
    "baseline_from_trial": "The baseline is trial {trial} of this run: its searched hyperparameters equal the "
                           "values of the `baseline` space.",
    "baseline_other_photos": "The baseline run was validated on other photos (only {shared} of its {total} "
                             "validation photos are in this run's validation set), so the comparison is "
                             "approximate.",
    "baseline_none": "No baseline run given, and no trial of this run uses the baseline values. To make one, run "
                     "`agetune search --space baseline --run runs/baseline` on the same data with the same "
                     "--image-size and --weights, then `agetune report {run} --baseline runs/baseline`.",
    "metric": "Metric",
    "best_model": "Best model",
    "baseline": "Baseline",
    "difference": "Difference",
    "val_mae_years": "Validation MAE (years)",
    "val_mape_percent": "Validation MAPE (%)",
    "epochs": "Epochs",
    "training_time": "Training time",
    "difference_note": "Difference is best model minus baseline; a negative MAE difference means the best model "
                       "errs by that many years less. Epochs and training time include earlier Hyperband rounds "
                       "that a trial continued.",
    "settings_intro": "The searched hyperparameters, and every other model setting on which the two runs differ:",
    # Trials
    "trials_heading": "All trials",
    "trials_intro": "Sorted by validation MAE, best first; the same table is in trials.csv beside this report.",
    "trial": "Trial",
    "status": "Status",
    "bracket": "Bracket",
    "round": "Round",
    "best_epoch": "Best epoch",
    "val_mae": "Val MAE",
    "val_mape": "Val MAPE",
    "train_mae": "Train MAE",
    "time": "Time",
    "message": "Error",
    # Learning curves
    "curves_heading": "Learning curves",
    "curves_intro": "Mean absolute error per epoch on the training and validation photos. A trial that continued "
                    "a Hyperband trial of the previous round starts with that trial's epochs.",
    "plot_curves_title": "Learning curves",
    "plot_epoch": "Epoch",
    "plot_mae_years": "MAE (years)",
    "curve_train": "{name}, training",
    "curve_val": "{name}, validation",
    "curve_best": "best (trial {trial})",
    "curve_baseline": "baseline (trial {trial})",
    # Hyperparameter effects
    "effects_heading": "Effect of each hyperparameter",
    "effects_intro": "Validation MAE of every completed trial against the value of one hyperparameter. The other "
                     "hyperparameters vary at the same time, so a pattern here is a hint, not a proof.",
    "plot_effects_title": "Validation MAE by hyperparameter",
    "plot_val_mae_years": "Val MAE (years)",
    # Hyperband
    "hyperband_heading": "Hyperband brackets",
    "hyperband_intro": "Hyperband trains many models for a few epochs, keeps the best 1/{factor} of them "
                       "(`search.factor` = {factor}) and trains those longer. Each bracket starts with a different "
                       "number of models; each round continues the previous round's best.",
    "trials_count": "Trials",
    "completed_count": "Completed",
    "epochs_to": "Trained up to epoch",
    "epochs_trained": "Epochs trained",
    "best_val_mae": "Best val MAE",
    # Errors
    "errors_heading": "Errors of the best model on the validation set",
    "errors_intro": "Predictions of trial {trial} on the {photos} validation photos: MAE {mae} years, mean bias "
                    "{bias} years (predicted minus true; positive means the model guesses too old).",
    "errors_model_changed": "Computed again because the best trial changed since the last report.",
    "plot_scatter_title": "Predicted against true age",
    "plot_true_age": "True age (years)",
    "plot_predicted_age": "Predicted age (years)",
    "plot_perfect": "perfect prediction",
    "plot_minors_pass": "minors sold without an ID check",
    "band": "Age band",
    "photos": "Photos",
    "mae_years": "MAE (years)",
    "bias_years": "Bias (years)",
    "bands_note": "Bias is the mean of predicted minus true age in the band.",
    "plot_bands_title": "Error by age band",
    "plot_bands_x": "True age band (years)",
    "plot_years": "Years",
    "plot_mae": "MAE",
    "plot_bias": "bias (predicted − true)",
    # Age check
    "check_heading": "Age check at the till",
    "check_rule": "The till asks for an ID when the estimated age is below {threshold}. The legal age for "
                  "alcohol is {legal_age}.",
    "check_minors": "Minors (true age under {legal_age}) estimated at {threshold} or older, who would be sold "
                    "alcohol without an ID check: {passed} of {minors} ({share}; 95% confidence interval {low} "
                    "to {high}).",
    "check_no_minors": "The validation set has no minors (true age under {legal_age}), so it cannot show how many "
                       "would pass without an ID check.",
    "check_adults": "Adults (true age {legal_age} or over) estimated under {threshold}, who would be asked for an "
                    "ID: {checked} of {adults} ({share}).",
    "check_no_adults": "The validation set has no adults (true age {legal_age} or over).",
    "check_curve_intro": "Both shares for every threshold from {first} to {last}: a higher threshold lets fewer "
                         "minors through and asks more adults for an ID.",
    "threshold": "Threshold",
    "minors_passed": "Minors without ID check",
    "adults_checked": "Adults asked for ID",
    "plot_check_title": "ID checks by threshold",
    "plot_threshold": "Threshold (estimated age, years)",
    "plot_share": "Share (%)",
    "plot_chosen": "threshold {threshold}",
    # Gallery
    "gallery_heading": "Largest errors",
    "gallery_warning": "Private use only: these are photos of real people from the dataset, and its licence may "
                       "forbid showing or sharing them. Do not publish or commit this report.",
    "gallery_caption": "{file}: true {age}, predicted {predicted}",
    # Units and formats
    "duration_hours": "{hours} h {minutes:02d} min",
    "duration_minutes": "{minutes} min {seconds:02d} s",
    "duration_seconds": "{seconds} s",
    "status_RUNNING": "running",
    "status_COMPLETED": "completed",
    "status_FAILED": "failed",
    "status_INVALID": "invalid",
}

RU: dict[str, str] = {
    "title": "Отчёт о подборе модели оценки возраста: {run}",
    "subtitle": "Папка запуска {run}, пространство поиска {space}, отчёт составлен {written}.",
    "partial": "Промежуточный отчёт: поиск ещё идёт (испытаний на данный момент: {trials}). В отчёт вошли "
               "только завершённые испытания; составьте его заново, когда поиск закончится.",
    "interrupted": "Промежуточный отчёт: поиск был прерван (испытаний на данный момент: {trials}). Продолжите "
                   "его той же командой `agetune search` и составьте отчёт заново.",
    "near_constant": "Испытание {trial} оценивает почти одинаковый возраст для всех: разброс его оценок "
                     "(стандартное отклонение) составляет {predicted} лет против {true} лет у настоящего возраста. "
                     "Модель недообучена, и её ошибки по возрастным группам и проверка возраста мало о чём говорят. "
                     "Прежде чем её использовать, обучите её дольше, с весами ImageNet или на изображениях "
                     "большего размера.",
    "synthetic": "В этом запуске использованы синтетические тестовые лица, поэтому его цифры ничего не говорят "
                 "о реальных покупателях.",
    "summary_heading": "Главное",
    "summary_best": "Лучшая модель: испытание {trial}, MAE на валидации {mae} года, {difference}.",
    "summary_better": "на {years} года точнее базовой",
    "summary_worse": "на {years} года хуже базовой",
    "summary_same": "как у базовой модели",
    "summary_is_baseline": "это и есть базовая конфигурация",
    "summary_no_baseline": "сравнить с базовой моделью не с чем",
    "summary_minors": "При пороге {threshold} без проверки документов прошли бы {share} несовершеннолетних "
                      "({passed} из {minors}), а документы спросили бы у {adult_share} совершеннолетних "
                      "({checked} из {adults}).",
    "summary_no_minors": "В валидационной выборке нет несовершеннолетних (младше {legal_age}), поэтому долю тех, "
                         "кто прошёл бы без проверки документов, оценить нельзя; при пороге {threshold} документы "
                         "спросили бы у {adult_share} совершеннолетних.",
    "data_heading": "Данные",
    "data_counts": "Всего фотографий: {photos}; для обучения: {train}, для валидации: {validation} "
                   "(по split.csv запуска).",
    "data_limit": "Поиск шёл на случайной выборке из {limit} фотографий набора данных.",
    "age_mean": "Средний возраст",
    "age_median": "Медианный возраст",
    "age_min": "Самый младший",
    "age_max": "Самый старший",
    "statistic": "Показатель",
    "all_photos": "Все фотографии",
    "train": "Обучение",
    "validation": "Валидация",
    "plot_ages_title": "Распределение возрастов",
    "plot_ages_x": "Возраст (лет, интервалы по 5 лет)",
    "plot_ages_y": "Фотографий",
    "search_heading": "Поиск",
    "setting": "Параметр",
    "value": "Значение",
    "tuner": "Алгоритм поиска",
    "objective": "Целевая метрика",
    "budget": "Бюджет",
    "budget_hyperband": "max_epochs {max_epochs}, factor {factor}, итераций Hyperband: {iterations}",
    "budget_trials": "max_trials {max_trials}, эпох на испытание: {epochs}",
    "trials_run": "Испытаний всего",
    "trials_completed": "Завершено",
    "trials_failed": "С ошибкой или недопустимых",
    "trials_running": "Ещё идут",
    "wall_time": "Длительность поиска",
    "wall_time_so_far": "{duration} на данный момент",
    "unknown": "нет данных",
    "train_time": "Суммарное время обучения",
    "hardware": "Оборудование",
    "hardware_value": "{host}: ядер CPU: {cpus}, {gpus}; TensorFlow {tensorflow}, Keras {keras}, "
                      "Keras Tuner {keras_tuner}",
    "no_gpu": "без GPU",
    "space_heading": "Перебираемые гиперпараметры",
    "space_intro": "Пространство поиска `{space}` перебирает эти гиперпараметры; остальные настройки "
                   "зафиксированы.",
    "space_none": "В пространстве поиска `{space}` все гиперпараметры зафиксированы, поэтому все испытания "
                  "обучают одну и ту же конфигурацию.",
    "hyperparameter": "Гиперпараметр",
    "kind": "Тип",
    "values": "Значения",
    "selection_heading": "Выбор лучшей модели",
    "selection_why": "У испытания {trial} самая низкая MAE на валидации среди завершённых испытаний "
                     "({completed}): {mae} года на эпохе {epoch}.",
    "selection_runner_up": "Второе по качеству испытание, {trial}, показало {mae} года.",
    "selection_tie": "Испытания {trials} дали ту же MAE на валидации; выбрано испытание {trial}, потому что оно "
                     "обучалось меньше эпох (при равенстве — с меньшим номером).",
    "selection_caveat": "По одним и тем же валидационным фотографиям модель и выбрана, и оценена, поэтому её MAE "
                        "на валидации немного занижена; объективную оценку дадут фотографии, которых поиск не видел.",
    "baseline_from_run": "Базовая модель — лучшее испытание ({trial}) запуска {run}, указанного в --baseline.",
    "baseline_from_trial": "Базовая модель — испытание {trial} этого запуска: его перебираемые гиперпараметры "
                           "совпадают со значениями пространства `baseline`.",
    "baseline_other_photos": "Базовый запуск оценивался на других валидационных фотографиях (с этим запуском "
                             "совпадают только {shared} из его {total}), поэтому сравнение приблизительное.",
    "baseline_none": "Базовый запуск не указан, и ни одно испытание этого запуска не использует базовые значения. "
                     "Чтобы получить его, выполните `agetune search --space baseline --run runs/baseline` на тех же "
                     "данных с теми же --image-size и --weights, затем "
                     "`agetune report {run} --baseline runs/baseline`.",
    "metric": "Метрика",
    "best_model": "Лучшая модель",
    "baseline": "Базовая модель",
    "difference": "Разница",
    "val_mae_years": "MAE на валидации (лет)",
    "val_mape_percent": "MAPE на валидации (%)",
    "epochs": "Эпох",
    "training_time": "Время обучения",
    "difference_note": "Разница — это лучшая модель минус базовая; отрицательная разница в MAE означает, что "
                       "лучшая модель ошибается на столько лет меньше. Эпохи и время обучения включают предыдущие "
                       "раунды Hyperband, которые испытание продолжило.",
    "settings_intro": "Перебираемые гиперпараметры, а также все прочие настройки модели, которыми запуски "
                      "отличаются:",
    "trials_heading": "Все испытания",
    "trials_intro": "Отсортированы по MAE на валидации, лучшие сверху; та же таблица лежит рядом с отчётом в "
                    "trials.csv.",
    "trial": "Испытание",
    "status": "Статус",
    "bracket": "Брекет",
    "round": "Раунд",
    "best_epoch": "Лучшая эпоха",
    "val_mae": "MAE вал.",
    "val_mape": "MAPE вал.",
    "train_mae": "MAE обуч.",
    "time": "Время",
    "message": "Ошибка",
    "curves_heading": "Кривые обучения",
    "curves_intro": "Средняя абсолютная ошибка по эпохам на обучающих и валидационных фотографиях. Если "
                    "испытание продолжает испытание предыдущего раунда Hyperband, его кривая начинается с эпох "
                    "того испытания.",
    "plot_curves_title": "Кривые обучения",
    "plot_epoch": "Эпоха",
    "plot_mae_years": "MAE (лет)",
    "curve_train": "{name}, обучение",
    "curve_val": "{name}, валидация",
    "curve_best": "лучшая (испытание {trial})",
    "curve_baseline": "базовая (испытание {trial})",
    "effects_heading": "Влияние гиперпараметров",
    "effects_intro": "MAE на валидации каждого завершённого испытания в зависимости от значения одного "
                     "гиперпараметра. Остальные гиперпараметры при этом тоже меняются, так что закономерность "
                     "здесь — подсказка, а не доказательство.",
    "plot_effects_title": "MAE на валидации по гиперпараметрам",
    "plot_val_mae_years": "MAE вал. (лет)",
    "hyperband_heading": "Брекеты Hyperband",
    "hyperband_intro": "Hyperband обучает много моделей по несколько эпох, оставляет лучшую 1/{factor} часть "
                       "(`search.factor` = {factor}) и обучает их дольше. Брекеты начинают с разного числа моделей; "
                       "каждый раунд продолжает лучшие модели предыдущего.",
    "trials_count": "Испытаний",
    "completed_count": "Завершено",
    "epochs_to": "Обучено до эпохи",
    "epochs_trained": "Обучено эпох",
    "best_val_mae": "Лучшая MAE вал.",
    "errors_heading": "Ошибки лучшей модели на валидационной выборке",
    "errors_intro": "Прогнозы испытания {trial} на валидационных фотографиях ({photos}): MAE {mae} года, "
                    "среднее смещение {bias} года (прогноз минус истинный возраст; плюс означает, что модель "
                    "завышает возраст).",
    "errors_model_changed": "Прогнозы рассчитаны заново: с прошлого отчёта сменилось лучшее испытание.",
    "plot_scatter_title": "Прогноз и истинный возраст",
    "plot_true_age": "Истинный возраст (лет)",
    "plot_predicted_age": "Прогноз возраста (лет)",
    "plot_perfect": "точный прогноз",
    "plot_minors_pass": "несовершеннолетние без проверки документов",
    "band": "Возрастная группа",
    "photos": "Фотографий",
    "mae_years": "MAE (лет)",
    "bias_years": "Смещение (лет)",
    "bands_note": "Смещение — среднее значение разницы «прогноз минус истинный возраст» в группе.",
    "plot_bands_title": "Ошибка по возрастным группам",
    "plot_bands_x": "Истинный возраст (лет)",
    "plot_years": "Лет",
    "plot_mae": "MAE",
    "plot_bias": "смещение (прогноз − истина)",
    "check_heading": "Проверка возраста на кассе",
    "check_rule": "Касса просит документ, если оценка возраста ниже {threshold}. Минимальный возраст для "
                  "покупки алкоголя — {legal_age}.",
    "check_minors": "Несовершеннолетние (истинный возраст меньше {legal_age}), чья оценка возраста {threshold} и "
                    "выше, — им продали бы алкоголь без проверки документов: {passed} из {minors} ({share}; "
                    "95-процентный доверительный интервал: от {low} до {high}).",
    "check_no_minors": "В валидационной выборке нет несовершеннолетних (истинный возраст меньше {legal_age}), "
                       "поэтому по ней нельзя оценить, сколько из них прошли бы без проверки документов.",
    "check_adults": "Совершеннолетние (истинный возраст {legal_age} и больше), чья оценка возраста ниже "
                    "{threshold}, — у них спросили бы документ: {checked} из {adults} ({share}).",
    "check_no_adults": "В валидационной выборке нет совершеннолетних (истинный возраст {legal_age} и больше).",
    "check_curve_intro": "Обе доли для каждого порога от {first} до {last}: чем выше порог, тем меньше "
                         "несовершеннолетних проходит без проверки и тем чаще документы спрашивают у взрослых.",
    "threshold": "Порог",
    "minors_passed": "Несовершеннолетние без проверки",
    "adults_checked": "Совершеннолетние с проверкой",
    "plot_check_title": "Проверка документов в зависимости от порога",
    "plot_threshold": "Порог (оценка возраста, лет)",
    "plot_share": "Доля (%)",
    "plot_chosen": "порог {threshold}",
    "gallery_heading": "Самые большие ошибки",
    "gallery_warning": "Только для внутреннего использования: это фотографии реальных людей из набора данных, и "
                       "его лицензия может запрещать их показ и передачу. Не публикуйте этот отчёт и не "
                       "добавляйте его в репозиторий.",
    "gallery_caption": "{file}: истинный {age}, прогноз {predicted}",
    "duration_hours": "{hours} ч {minutes:02d} мин",
    "duration_minutes": "{minutes} мин {seconds:02d} с",
    "duration_seconds": "{seconds} с",
    "status_RUNNING": "идёт",
    "status_COMPLETED": "завершено",
    "status_FAILED": "ошибка",
    "status_INVALID": "недопустимо",
}

TEXT: dict[str, dict[str, str]] = {"en": EN, "ru": RU}


def texts(lang: str) -> dict[str, str]:
    """Return the strings of one report language; raise AgetuneError for a language with none."""
    if lang not in TEXT:
        raise AgetuneError(f"report language {lang!r} is not available; use one of: {', '.join(LANGUAGES)}.")
    return TEXT[lang]


def headings(lang: str) -> list[str]:
    """Return the section headings of one language, the strings a translation must never leave in English."""
    table = texts(lang)
    return [value for key, value in table.items() if key.endswith("_heading")]
